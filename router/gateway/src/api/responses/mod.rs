//! `POST /v1/responses`: OpenAI's Responses API, stateless, for Codex, the Agents SDK and n8n
//! (`OPENAI_BASE_URL`). Translated at the edge into the hub request (`request.rs`), routed by
//! the one pipeline, rendered back as a `response` object or its event stream (`render.rs`).
//! Errors keep OpenAI's error shape, as on chat.

mod render;
mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::ApiError;
use super::chat::read_body;
use crate::pipeline::{self};
use crate::state::Gateway;

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let gw = &*gw;
    let bytes = read_body(body, gw.config.server.max_body_bytes).await?;
    let request::Parsed { hub, echo, stream } = request::parse(&bytes)?;
    super::spend::tag_from_metadata(gw, Some(&echo.metadata))?;
    let target = super::door_target(&hub, &headers);
    if stream {
        let routed = pipeline::stream(gw, &hub, &target).await?;
        let env = render::Envelope::new(routed.model.to_string(), echo);
        let renderer = render::EventRenderer::new(env);
        Ok(super::sse::answer(routed, renderer, None, gw.abort.clone()))
    } else {
        let routed = pipeline::complete(gw, &hub, &target).await?;
        let env = render::Envelope::new(routed.model.to_string(), echo);
        Ok(super::json_answer(env.complete(&routed.value), &routed))
    }
}
