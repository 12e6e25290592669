//! `GET /health` (liveness: the process answers) and `GET /health/ready` (readiness: config
//! loaded and every configured model has a running provider).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::Gateway;

pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(gw): State<Arc<Gateway>>) -> (StatusCode, Json<Value>) {
    let missing: Vec<&str> = gw
        .config
        .models
        .values()
        .filter(|m| gw.provider(&m.provider).is_none())
        .map(|m| m.id.as_str())
        .collect();
    let status = if missing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if missing.is_empty() { "ready" } else { "not_ready" },
            "models": gw.config.models.len(),
            "providers": gw.providers.len(),
            "models_without_provider": missing,
            "uptime_s": gw.started_at.elapsed().as_secs(),
        })),
    )
}
