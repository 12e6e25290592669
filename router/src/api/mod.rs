//! Ingress: the HTTP surface. One file per endpoint family; `ApiError` is the one conversion of
//! any failure to an HTTP answer. Handlers parse and validate, then hand over to `pipeline`.

mod chat;
mod error;
mod health;
mod models;

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

/// `x-switchyard-*` headers describing who answered.
pub(crate) fn routing_headers(
    headers: &mut axum::http::HeaderMap,
    model: &str,
    provider: &str,
    attempts: u32,
) {
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-switchyard-model", model);
    put("x-switchyard-provider", provider);
    put("x-switchyard-attempts", &attempts.to_string());
}
