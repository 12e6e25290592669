//! `GET /ai/policies` (every policy folder: version, ABI, sha256, status, last error, evaluations,
//! errors, p50/p99 µs) and `POST /ai/policies/reload` (re-read the folder now).

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{ApiError, redact};
use crate::keys::Caller;
use crate::state::Gateway;

pub async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Option<Extension<Caller>>,
) -> Json<Value> {
    let Some(reg) = &gw.policies else {
        return Json(json!({"dir": null, "policies": []}));
    };
    let mut body = json!({
        "dir": reg.dir().map(|d| d.display().to_string()),
        "abi": switchyard_plugins::ABI,
        "reloads": reg.reloads(),
        "engine": {
            "pooling": reg.engine().pooling(),
            "compatibility": reg.engine().compatibility_key(),
        },
        "policies": reg.statuses(),
    });
    redact::for_caller(caller.as_deref(), &mut body);
    Json(body)
}

pub async fn reload(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let Some(reg) = gw.policies.clone() else {
        return Err(ApiError::invalid_param(
            "policies.dir",
            "this gateway has no policy folder configured ([policies] dir)",
        ));
    };
    // Compiling is CPU work: keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || reg.reload())
        .await
        .map_err(|e| ApiError::internal(format!("reload task: {e}")))?;
    Ok(Json(json!(report)))
}
