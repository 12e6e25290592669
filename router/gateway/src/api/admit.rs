//! Admission, around every handler: the request id (`x-request-id`, echoed or generated; one
//! outside its documented form is a 400), the caller (virtual key, or the admin key for the
//! admin API, from `Authorization: Bearer`, `x-api-key` or `api-key`; headers that disagree
//! are a 401), the key's request rate, and — for the model-calling endpoints — the request's
//! `Exchange`, finished (log row, metrics) when the answer has been sent: at once for a
//! complete answer, at the end of the body for a stream.

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
use crate::config::AuthMode;
use crate::error::Error;
use crate::exchange::{self, Exchange};
use crate::keys::{Auth, Caller, SCOPE_DASHBOARD, hash_secret};
use crate::live::sessions::{self, Viewer};
use crate::state::Gateway;
use crate::telemetry::Stage;
use switchyard_types::new_id;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The server's request id on every model answer (`req_…`), whatever the client sent.
pub const SERVER_REQUEST_ID: HeaderName = HeaderName::from_static("x-switchyard-request-id");
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
    /// Writes about the caller's own requests (`/ai/feedback`): a JSON body and, in `keys`
    /// mode, a virtual key, handed to the handler as `Auth`. Not a model call: no exchange,
    /// no RPM (at most one write per request the key made).
    Keyed,
    /// The live feed and the dashboard's session: the admin key or a key with the `dashboard`
    /// scope (or, with `cookie`, the session cookie), handed to the handler as a `Viewer`;
    /// anyone in `open` mode.
    Dashboard { cookie: bool },
    /// `GET /ai/alerts`: a read (any virtual key, or the admin key), or the dashboard's session
    /// cookie when no key is presented (the page loads the alerts with it).
    ReadOrSession,
    /// `GET /ai/spend`: whoever may watch the live feed sees every key's spend; any other
    /// virtual key its own only (`spend::Scope`).
    Spend,
}

fn classify(method: &Method, path: &str) -> Class {
    // Model-calling endpoints are listed one by one: a new one is a read until it is added.
    match (method, path) {
        (_, "/health" | "/health/ready" | "/openapi.json") => Class::Public,
        // The dashboard's page and files hold no data (the feed they open is authenticated);
        // they are GET only, so any other method is a 405 for everyone.
        (_, p) if super::dashboard::is_public_path(p) => Class::Public,
        (_, "/metrics") => Class::Metrics,
        (_, p) if p.starts_with("/admin/") || p == "/admin" => Class::Admin,
        (&Method::DELETE, "/ai/cache") | (&Method::POST, "/ai/policies/reload") => Class::Admin,
        (&Method::POST, "/v1/chat/completions") => Class::Model("/v1/chat/completions"),
        (&Method::POST, "/v1/messages") => Class::Model("/v1/messages"),
        (&Method::POST, "/v1/messages/count_tokens") => Class::Model("/v1/messages/count_tokens"),
        (&Method::POST, "/v1/responses") => Class::Model("/v1/responses"),
        (&Method::POST, "/v1/embeddings") => Class::Model("/v1/embeddings"),
        (&Method::POST, "/ai/feedback") => Class::Keyed,
        (&Method::GET, "/ai/stream") => Class::Dashboard { cookie: true },
        (&Method::GET, "/ai/alerts") => Class::ReadOrSession,
        (&Method::GET, "/ai/spend") => Class::Spend,
        (&Method::POST, "/dashboard/session") => Class::Dashboard { cookie: false },
        (&Method::POST, "/ai/route") => Class::Model("/ai/route"),
        (&Method::POST, "/ai/route/batch") => Class::Model("/ai/route/batch"),
        (&Method::POST, "/ai/analyze/market") => Class::Model("/ai/analyze/market"),
        (&Method::POST, "/ai/sentiment/news") => Class::Model("/ai/sentiment/news"),
        (&Method::POST, "/ai/optimize/portfolio") => Class::Model("/ai/optimize/portfolio"),
        _ => Class::Read,
    }
}

/// The headers a key may arrive in: `Authorization: Bearer …` (OpenAI SDKs), `x-api-key`
/// (Anthropic SDKs, coding agents) and `api-key` (Azure-style clients).
const KEY_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// The key a request presents, from any of `KEY_HEADERS` (empty values carry none). When
/// they carry different keys the request is refused: picking one would authenticate as a
/// caller the client may not have meant.
fn presented(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut found: Option<(&str, &str)> = None;
    for name in KEY_HEADERS {
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else {
                return Err(Error::unauthorized(format!(
                    "The {name} header is not readable: a key is printable ASCII"
                )));
            };
            let token = if name == "authorization" {
                bearer(text)
            } else {
                text.trim()
            };
            if token.is_empty() {
                continue;
            }
            match found {
                None => found = Some((name, token)),
                Some((_, seen)) if seen == token => {}
                Some((first, _)) => {
                    let which = if first == name {
                        format!("two {name} headers")
                    } else {
                        format!("the {first} and {name} headers")
                    };
                    return Err(Error::unauthorized(format!(
                        "Conflicting credentials: {which} carry different keys; send one key"
                    )));
                }
            }
        }
    }
    Ok(found.map(|(_, token)| token))
}

/// The token of an `Authorization` value: after `Bearer ` (any case), or the whole value.
fn bearer(value: &str) -> &str {
    let v = value.trim();
    match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => v,
    }
}

/// The longest `x-request-id` taken (as documented).
pub const MAX_REQUEST_ID: usize = 128;

/// A client's `x-request-id`: 1-128 printable ASCII characters (no spaces), else refused. It is
/// echoed and logged in a column of its own; the row's id is always the server's.
fn client_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(REQUEST_ID) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_REQUEST_ID || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::invalid_param(
            "x-request-id",
            format!(
                "x-request-id must be 1 to {MAX_REQUEST_ID} printable ASCII characters without \
                 spaces (got {} bytes)",
                bytes.len()
            ),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

pub async fn admit(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let class = match classify(req.method(), req.uri().path()) {
        Class::ReadOrSession
            if matches!(presented(req.headers()), Ok(None))
                && sessions::from_cookies(req.headers()).is_some() =>
        {
            Class::Dashboard { cookie: true }
        }
        Class::ReadOrSession => Class::Read,
        class => class,
    };
    let (client, bad_id) = match client_id(req.headers()) {
        Ok(id) => (id, None),
        Err(e) => (None, Some(e)),
    };
    // Health probes and scrapers are not refused for their id (one is made instead); every
    // other endpoint documents the header and refuses a bad one after the guard (421/403).
    let checks_id = !matches!(class, Class::Public | Class::Metrics);
    let id_check = match bad_id {
        Some(e) if checks_id => Err(e),
        _ => Ok(()),
    };
    let guarded =
        guard::check(&gw.config.server, req.method(), req.uri(), req.headers()).and(id_check);
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
            let allowed = presented(req.headers()).and_then(|key| match key {
                // The dashboard's operator controls: a browser session made with the admin key
                // (SameSite=Strict, so no other site's page can send it; the guard checks Origin).
                None if admin_session(&gw, req.headers()) => Ok(()),
                key => gw.keys.check_admin(key, peer),
            });
            match allowed {
                Ok(()) => next.run(req).await,
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        (Class::Keyed, Ok(())) => {
            let auth = match guard::json_body(req.headers()) {
                Ok(()) => match presented(req.headers()) {
                    Ok(key) => gw.keys.authenticate(key).await.map_err(ApiError::from),
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e),
            };
            let auth = match auth {
                Ok(Auth::Key(k)) if !k.may_call_models() => Err(k.read_only_error().into()),
                other => other,
            };
            match auth {
                Ok(auth) => {
                    req.extensions_mut().insert(auth);
                    next.run(req).await
                }
                Err(e) => e.into_response(),
            }
        }
        (Class::Dashboard { cookie }, Ok(())) => match viewer(&gw, req.headers(), cookie).await {
            Ok(viewer) => {
                req.extensions_mut().insert(viewer);
                next.run(req).await
            }
            Err(e) => ApiError::from(e).into_response(),
        },
        (Class::Spend, Ok(())) => match spend_scope(&gw, req.headers()).await {
            Ok(scope) => {
                req.extensions_mut().insert(scope);
                next.run(req).await
            }
            Err(e) => ApiError::from(e).into_response(),
        },
        (Class::Read | Class::ReadOrSession, Ok(())) => {
            let caller = match presented(req.headers()) {
                Ok(key) if gw.keys.is_admin(key) => Ok(Caller::Admin),
                Ok(key) => gw.keys.authenticate(key).await.map(|_| Caller::Other),
                Err(e) => Err(e),
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

/// A live dashboard session that was opened with the admin key (never in `open` mode, where
/// the admin API follows its own rule).
fn admin_session(gw: &Gateway, headers: &HeaderMap) -> bool {
    gw.keys.mode() == AuthMode::Keys
        && sessions::from_cookies(headers)
            .and_then(|id| gw.live.sessions.check(id, Instant::now()))
            .is_some_and(|v| matches!(v, Viewer::Admin))
}

/// Who watches the live feed: the admin key, a key with the `dashboard` scope or (`cookie`) a
/// live session; anyone in `open` mode. A key in a header wins over a cookie.
async fn viewer(gw: &Gateway, headers: &HeaderMap, cookie: bool) -> Result<Viewer, Error> {
    if gw.keys.mode() == AuthMode::Open {
        return Ok(Viewer::Open);
    }
    let key = presented(headers)?;
    if key.is_some() {
        if gw.keys.is_admin(key) {
            return Ok(Viewer::Admin);
        }
        return match gw.keys.authenticate(key).await? {
            Auth::Key(k) if k.has_scope(SCOPE_DASHBOARD) => Ok(Viewer::Key(k)),
            Auth::Key(k) => Err(Error::forbidden(
                None,
                format!(
                    "Key '{}' has no '{SCOPE_DASHBOARD}' scope: the live feed needs the admin key \
                     or a key made with \"scopes\": [\"{SCOPE_DASHBOARD}\"]",
                    k.id()
                ),
            )),
            Auth::Open => Ok(Viewer::Open),
        };
    }
    let session = if cookie {
        sessions::from_cookies(headers)
    } else {
        None
    };
    match session {
        Some(id) => gw.live.sessions.check(id, Instant::now()).ok_or_else(|| {
            Error::unauthorized(
                "The dashboard session has expired or its key was revoked: sign in again \
                 (POST /dashboard/session)",
            )
        }),
        None => Err(Error::unauthorized(
            "The live feed needs the admin key or a key with the dashboard scope \
             (Authorization: Bearer <key>), or a session cookie from POST /dashboard/session",
        )),
    }
}

/// Whose spend a report may show: a virtual key without the `dashboard` scope sees its own
/// requests only; every viewer of the live feed (`viewer`) sees all of them.
async fn spend_scope(gw: &Gateway, headers: &HeaderMap) -> Result<super::spend::Scope, Error> {
    if gw.keys.mode() != AuthMode::Open {
        let key = presented(headers)?;
        if key.is_some()
            && !gw.keys.is_admin(key)
            && let Auth::Key(k) = gw.keys.authenticate(key).await?
            && !k.has_scope(SCOPE_DASHBOARD)
        {
            return Ok(super::spend::Scope::Own(k.id().to_owned()));
        }
    }
    viewer(gw, headers, true)
        .await
        .map(|_| super::spend::Scope::All)
}

/// `/metrics` with `[metrics] token` or `require_admin`: the token or the admin key.
fn metrics_allowed(gw: &Gateway, headers: &HeaderMap) -> Result<(), Error> {
    let cfg = &gw.config.metrics;
    if cfg.token.is_none() && !cfg.require_admin {
        return Ok(());
    }
    let key = presented(headers)?;
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
    let mut trace =
        crate::telemetry::otel::begin(gw.sinks.traces.as_deref(), req.headers(), started);
    let mut exchange =
        |key| Exchange::new(client.clone(), endpoint, key, gw.sinks.clone()).traced(trace.take());
    if let Err(e) = guarded.and_then(|()| guard::json_body(req.headers())) {
        return refused(exchange(None), e);
    }
    let presented = match presented(req.headers()) {
        Ok(key) => key,
        Err(e) => return refused(exchange(None), e.into()),
    };
    let key = match gw.keys.authenticate(presented).await {
        Ok(Auth::Key(k)) if !k.may_call_models() => {
            let e = k.read_only_error();
            return refused(exchange(Some(k)), e.into());
        }
        Ok(Auth::Key(k)) => Some(k),
        Ok(Auth::Open) => None,
        Err(e) => return refused(exchange(None), e.into()),
    };
    if let Some(k) = &key
        && let Err(e) = k.admit(switchyard_types::clock::now_ms().div_euclid(1000))
    {
        return refused(exchange(key.clone()), e.into());
    }
    let ex = exchange(key);
    if let Err(e) = header_tags(gw, req.headers(), &ex) {
        return refused(ex, e);
    }
    let ex = Arc::new(ex);
    ex.stage(Stage::Admit, started.elapsed());
    req.extensions_mut().insert(ex.clone());
    let mut response = exchange::scope(ex.clone(), next.run(req)).await;
    let status = response.status().as_u16();
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        ex.set_error(Some(code.0));
    }
    request_ids(&mut response, &ex);
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

/// The tags of `x-switchyard-tags` that `[log] tags` allows, on the exchange; a bad value of
/// an allowed tag is a 400 naming the header.
fn header_tags(gw: &Gateway, headers: &HeaderMap, ex: &Exchange) -> Result<(), ApiError> {
    const TAGS: &str = "x-switchyard-tags";
    for value in headers.get_all(TAGS) {
        let tags = gw
            .config
            .log
            .header_tags(value.as_bytes())
            .map_err(|m| ApiError::invalid_param(TAGS, format!("{TAGS}: {m}")))?;
        ex.add_tags(tags).map_err(|name| {
            ApiError::invalid_param(TAGS, format!("{TAGS}: two values for the tag '{name}'"))
        })?;
    }
    Ok(())
}

/// The request's ids on its answer: `x-request-id` (the client's own, else the server's) and
/// the server's own (the log row's, what `POST /ai/feedback` takes), also when the client sent
/// its own `x-request-id`.
fn request_ids(response: &mut Response, ex: &Exchange) {
    if let Ok(v) = HeaderValue::from_str(ex.public_id()) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ex.id) {
        response.headers_mut().insert(SERVER_REQUEST_ID, v);
    }
}

/// A request refused at admission still gets its log row.
fn refused(ex: Exchange, e: ApiError) -> Response {
    ex.set_error(e.code);
    ex.finish(e.status.as_u16());
    let mut response = e.into_response();
    request_ids(&mut response, &ex);
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
