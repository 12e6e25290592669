//! `GET /v1/models`: the configured models in OpenAI's list shape, with Switchyard's catalog
//! facts (context window, prices, capabilities) as extra fields SDKs ignore — or, when the
//! request carries `anthropic-version` (Anthropic's SDKs always send it), in Anthropic's shape.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::ApiError;
use crate::config::ModelConfig;
use crate::state::Gateway;

fn model_object(m: &ModelConfig, created: u64) -> Value {
    let e = &m.entry;
    json!({
        "id": m.id.as_str(),
        "object": "model",
        "created": created,
        "owned_by": m.provider.as_str(),
        "upstream": m.upstream,
        "kind": e.kind,
        "context_window": e.context_window,
        "max_output_tokens": e.max_output,
        "pricing": {
            "input_per_1m": e.input,
            "output_per_1m": e.output,
            "cached_input_per_1m": e.cached_input,
            "cache_write_per_1m": e.cache_write,
        },
        "capabilities": e.capabilities,
        "deprecated": e.deprecated,
    })
}

/// A model in Anthropic's shape (`type: model`, `display_name`, `created_at`).
fn anthropic_object(m: &ModelConfig, created: u64) -> Value {
    json!({
        "type": "model",
        "id": m.id.as_str(),
        "display_name": m.id.as_str(),
        "created_at": switchyard_types::clock::rfc3339(created),
    })
}

fn anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

pub async fn list(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Json<Value> {
    let created = switchyard_types::unix_now();
    if anthropic(&headers) {
        // Models `/v1/messages` can use: not the embedding models.
        let chat: Vec<&ModelConfig> = gw
            .config
            .models
            .values()
            .filter(|m| !m.entry.is_embedding())
            .collect();
        let data: Vec<Value> = chat.iter().map(|m| anthropic_object(m, created)).collect();
        let first = chat.first().map(|m| m.id.as_str());
        let last = chat.last().map(|m| m.id.as_str());
        return Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}));
    }
    let data: Vec<Value> = gw
        .config
        .models
        .values()
        .map(|m| model_object(m, created))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn get_one(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match gw.model(&model) {
        Some(m) if anthropic(&headers) => {
            Ok(Json(anthropic_object(m, switchyard_types::unix_now())))
        }
        Some(m) => Ok(Json(model_object(m, switchyard_types::unix_now()))),
        None => {
            let names: Vec<&str> = gw.config.models.keys().map(|k| k.as_str()).collect();
            Err(crate::error::Error::model_not_found(&model, &names).into())
        }
    }
}
