//! Ingress: the HTTP surface. One file per endpoint family; `ApiError` is the one conversion of
//! any failure to an HTTP answer. Handlers parse and validate, then hand over to `pipeline`.

mod analyst;
mod chat;
mod error;
mod health;
mod insight;
mod models;
mod policies;
mod route;

pub use route::explain;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::routing::{get, post};

pub use error::ApiError;

use crate::state::Gateway;

/// The gateway's HTTP router. Used by `main` and by in-process tests (`oneshot`).
pub fn app(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(chat::chat_completions).fallback(method_not_allowed),
        )
        .route("/ai/route", post(route::route).fallback(method_not_allowed))
        .route(
            "/ai/route/batch",
            post(route::batch).fallback(method_not_allowed),
        )
        .route(
            "/ai/analyze/market",
            post(analyst::market).fallback(method_not_allowed),
        )
        .route(
            "/ai/sentiment/news",
            post(analyst::sentiment).fallback(method_not_allowed),
        )
        .route(
            "/ai/optimize/portfolio",
            post(analyst::portfolio).fallback(method_not_allowed),
        )
        .route("/ai/models", get(insight::models))
        .route("/ai/policies", get(policies::list))
        .route(
            "/ai/policies/reload",
            post(policies::reload).fallback(method_not_allowed),
        )
        .route("/ai/performance", get(insight::performance))
        .route("/health/detailed", get(insight::detailed))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*model}", get(models::get_one))
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(not_found)
        // Bodies are read with the configured limit inside the handlers (413 in OpenAI's shape).
        .layer(DefaultBodyLimit::disable())
        .with_state(gw)
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

/// The request headers routing policies may see.
pub(crate) fn policy_headers(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| crate::policy::visible_header(n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}
