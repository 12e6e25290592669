//! `POST /v1/responses`: OpenAI's Responses API, stateless, for Codex, the Agents SDK and n8n
//! (`OPENAI_BASE_URL`). Translated at the edge into the hub request (`request.rs`), routed by
//! the one pipeline, rendered back as a `response` object or its event stream (`render.rs`).
//! Errors keep OpenAI's error shape, as on chat.

mod render;
mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::chat::{cache_control, read_body};
use super::{ApiError, policy_headers, routing_headers};
use crate::pipeline::{self, Target};
use crate::state::Gateway;

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let gw = &*gw;
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request::Parsed { hub, echo, stream } = request::parse(&bytes)?;
    let target = Target {
        name: Some(&hub.model),
        headers: policy_headers(&headers),
        cache: hub.cache,
        cache_control: cache_control(&headers),
        ..Target::default()
    };
    if stream {
        let routed = pipeline::stream(gw, &hub, &target).await?;
        let env = render::Envelope::new(routed.model.to_string(), echo);
        let renderer = render::EventRenderer::new(env);
        Ok(super::sse::answer(routed, renderer, None, gw.abort.clone()))
    } else {
        let routed = pipeline::complete(gw, &hub, &target).await?;
        let cost = routed.cost_usd();
        let env = render::Envelope::new(routed.model.to_string(), echo);
        let mut response = Json(env.complete(&routed.value)).into_response();
        routing_headers(response.headers_mut(), &routed, Some(cost));
        Ok(response)
    }
}
