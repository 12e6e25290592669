//! Ingress: the HTTP surface. One file per endpoint family; `ApiError` is the one conversion of
//! any failure to an HTTP answer. Handlers parse and validate, then hand over to `pipeline`.

mod admin;
pub(crate) mod admit;
mod alerts;
mod analyst;
mod anthropic;
mod chat;
mod compress;
mod controls;
mod dashboard;
mod embeddings;
mod error;
pub(crate) mod feedback;
mod guard;
mod health;
mod insight;
mod json;
mod models;
pub mod openapi;
mod policies;
mod redact;
mod responses;
mod route;
mod shed;
mod spend;
mod sse;
mod stream;
mod text_or;

pub use route::explain;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::routing::{MethodRouter, delete, get, post};

pub use error::ApiError;

use crate::state::Gateway;

/// One path of the HTTP surface: its methods and handlers. `app` is built from this table and
/// the OpenAPI document is checked against it (tests), so the two cannot drift apart.
pub struct Endpoint {
    pub path: &'static str,
    pub methods: &'static [Method],
    handler: MethodRouter<Arc<Gateway>>,
}

/// Every endpoint the gateway serves.
pub fn endpoints() -> Vec<Endpoint> {
    let e = |path, methods, handler| Endpoint {
        path,
        methods,
        handler,
    };
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    vec![
        e("/v1/chat/completions", POST, post(chat::chat_completions)),
        e("/v1/messages", POST, post(anthropic::messages)),
        e(
            "/v1/messages/count_tokens",
            POST,
            post(anthropic::count_tokens),
        ),
        e("/v1/responses", POST, post(responses::create)),
        e("/v1/embeddings", POST, post(embeddings::create)),
        e("/v1/models", GET, get(models::list)),
        e("/v1/models/{model}", GET, get(models::get_one)),
        e("/ai/route", POST, post(route::route)),
        e("/ai/route/batch", POST, post(route::batch)),
        e("/ai/feedback", POST, post(feedback::give)),
        e("/ai/analyze/market", POST, post(analyst::market)),
        e("/ai/sentiment/news", POST, post(analyst::sentiment)),
        e("/ai/optimize/portfolio", POST, post(analyst::portfolio)),
        e("/ai/models", GET, get(insight::models)),
        e("/ai/performance", GET, get(insight::performance)),
        e("/ai/alerts", GET, get(alerts::list)),
        e("/ai/spend", GET, get(spend::report)),
        e("/ai/policies", GET, get(policies::list)),
        e("/ai/policies/reload", POST, post(policies::reload)),
        e("/ai/cache/stats", GET, get(admin::cache_stats)),
        e("/ai/cache", &[Method::DELETE], delete(admin::cache_clear)),
        e(
            "/admin/keys",
            &[Method::GET, Method::POST],
            get(admin::list_keys).post(admin::create_key),
        ),
        e(
            "/admin/keys/{id}",
            &[Method::GET, Method::DELETE],
            get(admin::get_key).delete(admin::revoke_key),
        ),
        e("/admin/keys/{id}/spend", GET, get(admin::key_spend)),
        e(
            "/admin/models/{model}/drain",
            &[Method::POST, Method::DELETE],
            post(controls::drain).delete(controls::undrain),
        ),
        e("/admin/models/{model}/breaker", POST, post(controls::force)),
        e("/admin/breakers/reset", POST, post(controls::reset)),
        e("/ai/stream", GET, get(stream::stream)),
        e("/dashboard/session", POST, post(stream::session)),
        e("/health", GET, get(health::live)),
        e("/health/ready", GET, get(health::ready)),
        e("/health/detailed", GET, get(insight::detailed)),
        e("/metrics", GET, get(admin::metrics)),
        e("/openapi.json", GET, get(openapi::document)),
        e("/dashboard", GET, get(dashboard::page)),
        e("/dashboard/{asset}", GET, get(dashboard::asset)),
    ]
}

/// The gateway's HTTP router. Used by `main` and by in-process tests (`oneshot`).
pub fn app(gw: Arc<Gateway>) -> Router {
    let mut router = Router::new();
    for e in endpoints() {
        // Model ids contain slashes (`ollama/llama3.2`): the path takes the rest of the URL.
        let path = if e.path == "/v1/models/{model}" {
            "/v1/models/{*model}"
        } else {
            e.path
        };
        router = router.route(path, e.handler.fallback(method_not_allowed));
    }
    let router = router
        .fallback(not_found)
        // Bodies are read with the configured limit inside the handlers (413 in OpenAI's shape).
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            gw.abort.clone(),
            shed::until_abort,
        ))
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            admit::admit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shed::Limit::new(&gw),
            shed::shed,
        ))
        .layer(axum::middleware::from_fn(anthropic::anthropic_errors));
    // Outside admission, so that a preflight from an allowed origin is answered here; the
    // admission guard has refused every origin not allowed.
    let router = match guard::cors(&gw.config.server) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Outermost, so every JSON answer (errors and refusals too) is compressed the same way.
    let router = match compress::layer(&gw.config.server.compression) {
        Some(compression) => router.layer(compression),
        None => router,
    };
    router.with_state(gw)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// `x-switchyard-*` headers describing who answered, over which route, after how many
/// attempts, at what cost (known for complete answers only).
pub(crate) fn routing_headers<T>(
    headers: &mut axum::http::HeaderMap,
    routed: &crate::pipeline::Routed<T>,
    cost_usd: Option<f64>,
) {
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-switchyard-model", routed.model.as_str());
    put("x-switchyard-provider", routed.provider.as_str());
    put("x-switchyard-route", &routed.route);
    put("x-switchyard-attempts", &routed.attempt_count().to_string());
    put("x-switchyard-cache", routed.cache.as_str());
    if let Some(cost) = cost_usd {
        put("x-switchyard-cost-usd", &format!("{cost:.8}"));
    }
    // Headers set by routing policies (validated by the host: lower-case `x-` names, printable).
    for (name, value) in &routed.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
}

/// A complete routed answer: `body` as JSON, with the routing headers and its cost.
pub(crate) fn json_answer<T>(
    body: impl serde::Serialize,
    routed: &crate::pipeline::Routed<T>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = axum::Json(body).into_response();
    routing_headers(response.headers_mut(), routed, Some(routed.cost_usd()));
    response
}

/// What a door's hub request is routed over: its `model` (a model or a route), the headers
/// policies may see, and its cache controls (the body's and `Cache-Control`).
pub(crate) fn door_target<'a>(
    request: &'a switchyard_types::ChatRequest,
    headers: &axum::http::HeaderMap,
) -> crate::pipeline::Target<'a> {
    crate::pipeline::Target {
        name: Some(&request.model),
        headers: policy_headers(headers),
        cache: request.cache,
        cache_control: chat::cache_control(headers),
        ..crate::pipeline::Target::default()
    }
}

/// The request headers routing policies may see.
pub(crate) fn policy_headers(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| crate::policy::visible_header(n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}
