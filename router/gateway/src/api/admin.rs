//! The admin API (admin key only, checked by `admit`): virtual keys and the cache.
//!
//! `POST /admin/keys` makes a key and shows its secret once; `GET /admin/keys[/{id}]` lists
//! them (never the secret, never its hash); `DELETE /admin/keys/{id}` revokes one, refused from
//! the next request on; `GET /admin/keys/{id}/spend` gives the current period's spend, what is
//! reserved by requests in flight, and past periods from the store. `DELETE /ai/cache` empties
//! the response cache.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::chat::body_json;
use crate::keys::{KeyState, NewKey};
use crate::state::Gateway;
use switchyard_types::clock::now_ms;
use switchyard_types::money::pico_to_usd;

fn key_json(k: &KeyState) -> Value {
    let r = &k.record;
    json!({
        "id": r.id,
        "name": r.name,
        "prefix": r.prefix,
        "created_ms": r.created_ms,
        "revoked": k.is_revoked(),
        "revoked_ms": r.revoked_ms,
        "routes": r.routes,
        "models": r.models,
        "budget_usd": r.budget_picousd.map(pico_to_usd),
        "budget_period": k.period.as_str(),
        "rpm": r.rpm,
        "tpm": r.tpm,
        "scopes": r.scopes,
        "usage": k.usage(now_ms()),
    })
}

/// The key with this id, or a 404 naming it.
fn key(gw: &Gateway, id: &str) -> Result<Arc<KeyState>, ApiError> {
    gw.keys.get(id).ok_or_else(|| ApiError::no_such("key", id))
}

pub async fn create_key(State(gw): State<Arc<Gateway>>, body: Body) -> Result<Response, ApiError> {
    let new: NewKey = body_json(&gw, body).await?;
    for (i, route) in new.routes.iter().enumerate() {
        if !gw.config.routes.contains_key(route) && !gw.config.models.contains_key(route.as_str()) {
            return Err(ApiError::invalid_param(
                format!("routes[{i}]"),
                format!("no route or model named '{route}'"),
            ));
        }
    }
    for (i, model) in new.models.iter().enumerate() {
        if !gw.config.models.contains_key(model.as_str()) {
            return Err(ApiError::invalid_param(
                format!("models[{i}]"),
                format!("no model named '{model}'"),
            ));
        }
    }
    let (state, secret) = gw.keys.create(new).await?;
    let mut v = key_json(&state);
    v["key"] = json!(secret);
    v["note"] = json!("Store this key now: it is not shown again.");
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn list_keys(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let keys: Vec<Value> = gw.keys.list().iter().map(|k| key_json(k)).collect();
    Json(json!({"keys": keys}))
}

pub async fn get_key(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let k = key(&gw, &id)?;
    Ok(Json(key_json(&k)))
}

pub async fn revoke_key(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let k = key(&gw, &id)?;
    let revoked_now = gw.keys.revoke(&id).await?;
    Ok(Json(json!({
        "id": k.record.id,
        "revoked": true,
        "already_revoked": !revoked_now,
    })))
}

pub async fn key_spend(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let k = key(&gw, &id)?;
    let history: Vec<Value> = gw
        .keys
        .history(&id)
        .await
        .into_iter()
        .map(|(start, t)| {
            json!({
                "period_start_ms": start,
                "spent_usd": pico_to_usd(t.cost_picousd),
                "spent_picousd": t.cost_picousd,
                "requests": t.requests,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
            })
        })
        .collect();
    let mut v = json!(gw.keys.usage(&k).await);
    v["id"] = json!(k.record.id);
    v["history"] = json!(history);
    Ok(Json(v))
}

pub async fn cache_stats(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let cfg = gw.cache.config();
    Json(json!({
        "enabled": cfg.enabled,
        "ttl_s": cfg.ttl_s,
        "max_ttl_s": cfg.max_ttl_s,
        "max_entry_bytes": cfg.max_entry_bytes,
        "stats": gw.cache.stats(),
        "shared": gw.cache.l2().map(|l2| l2.stats()),
    }))
}

/// `DELETE /ai/cache`: this replica's entries, and with Redis the shared (L2) entries and
/// every other replica's own (told over pub/sub).
pub async fn cache_clear(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let cleared = gw.cache.clear();
    let mut v = json!({"cleared": cleared});
    if let Some(l2) = gw.cache.l2() {
        v["cleared_shared"] = json!(l2.clear().await);
    }
    if let Some(shared) = gw.keys.shared() {
        shared.publish(&crate::shared::Event::CacheClear).await;
    }
    Json(v)
}

pub async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::telemetry::CONTENT_TYPE,
        )],
        gw.sinks.metrics.render(),
    )
        .into_response()
}
