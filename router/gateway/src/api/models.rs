//! `GET /v1/models`: the configured models in OpenAI's list shape, with Switchyard's catalog
//! facts (context window, prices, capabilities) as extra fields SDKs ignore.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
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

pub async fn list(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let created = switchyard_types::unix_now();
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
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match gw.model(&model) {
        Some(m) => Ok(Json(model_object(m, switchyard_types::unix_now()))),
        None => {
            let names: Vec<&str> = gw.config.models.keys().map(|k| k.as_str()).collect();
            Err(crate::error::Error::model_not_found(&model, &names).into())
        }
    }
}
