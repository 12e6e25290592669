//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, for the
//! official SDKs and coding agents (`ANTHROPIC_BASE_URL`) unchanged.
//!
//! The body is translated at the edge into the hub request (`request.rs`), with the client's
//! own body attached for Anthropic upstreams; `pipeline` routes, caches, budgets and fails over
//! exactly as for chat; the answer is rendered back in Anthropic's shapes (`render.rs`). Every
//! error on these paths — the middleware's too — is reshaped into Anthropic's error object by
//! `anthropic_errors`.

mod render;
mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::ApiError;
use super::chat::read_body;
use crate::pipeline::{self};
use crate::state::Gateway;
use switchyard_routing::tokens;
use switchyard_types::new_id;

use render::error_body;

pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let gw = &*gw;
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request::Parsed { mut hub, stream } = request::parse(&bytes, false)?;
    hub.stream = stream;
    // Beta features the client turned on reach Anthropic upstreams with its body.
    let beta: Vec<(String, String)> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| Some(("anthropic-beta".to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if let Some(native) = hub.native.as_mut()
        && !beta.is_empty()
    {
        Arc::make_mut(native).headers = beta;
    }
    let target = super::door_target(&hub, &headers);
    let id = new_id("msg_");
    if stream {
        let routed = pipeline::stream(gw, &hub, &target).await?;
        let input_tokens = pipeline::prompt_tokens(&routed.decision, &routed.model);
        let renderer = render::EventRenderer::new(id, routed.model.to_string(), input_tokens);
        Ok(super::sse::answer(routed, renderer, None, gw.abort.clone()))
    } else {
        let routed = pipeline::complete(gw, &hub, &target).await?;
        let body = render::message(&routed.value, &id, routed.model.as_str());
        Ok(super::json_answer(body, &routed))
    }
}

/// The prompt's tokens as the router counts them for the model (or the route's first model)
/// the request names: the same count routing and budgets use, with the family's margin.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request::Parsed { hub, .. } = request::parse(&bytes, true)?;
    let model = match gw.config.routes.get(hub.model.as_str()) {
        Some(route) => route.models.first().and_then(|m| gw.model(m.as_str())),
        None => gw.model(&hub.model),
    };
    let Some(model) = model else {
        let mut names: Vec<&str> = gw.config.models.keys().map(|k| k.as_str()).collect();
        names.extend(gw.config.routes.keys().map(String::as_str));
        return Err(crate::error::Error::model_not_found(&hub.model, &names).into());
    };
    let exchange = crate::exchange::current();
    if let Some(key) = exchange.as_ref().and_then(|e| e.key.as_ref()) {
        let allowed = if gw.config.routes.contains_key(hub.model.as_str()) {
            key.allows_route(&hub.model)
        } else {
            key.allows_model(&hub.model)
        };
        if !allowed {
            return Err(crate::error::Error::forbidden(
                Some("model".into()),
                format!("Key '{}' may not use '{}'", key.id(), hub.model),
            )
            .into());
        }
    }
    let family = model.entry.tokenizer;
    let count = tokens::count_request(family, &hub);
    Ok(Json(json!({
        "input_tokens": count.tokens,
        "model": model.id.as_str(),
        "tokenizer": family,
        "exact": count.exact,
        "margin": tokens::margin(family),
    })))
}

/// Reshape every error answered on the Messages paths (and on `/v1/models` asked in Anthropic's
/// dialect) into Anthropic's error object, whoever produced it (admission, the body limit, the
/// pipeline), keeping status and headers.
pub async fn anthropic_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let anthropic = path == "/v1/messages"
        || path.starts_with("/v1/messages/")
        || (path.starts_with("/v1/models") && req.headers().contains_key("anthropic-version"));
    let response = next.run(req).await;
    if !anthropic {
        return response;
    }
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&error_body(&error)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
