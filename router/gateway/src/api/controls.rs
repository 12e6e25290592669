//! Operator controls (admin key only, checked by `admit`): drain a model and bring it back,
//! force its breaker open or closed, reset every breaker. The state is the model's health
//! (`ModelHealth::set_drained`, `force`, `reset_breaker`), so routing filters a drained or
//! forced-open model like any unavailable one (`available`: `drained`, `breaker_forced_open`)
//! and requests already in flight finish. Each change is published on the live feed as a
//! `breaker` event with cause `drained` or `forced`. State is this replica's own, in memory.
//!
//! A model id with a slash (`ollama/llama3.2`) is sent with the slash encoded (`%2F`).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::ApiError;
use super::chat::body_json;
use crate::live::snapshot::breaker_label;
use crate::live::{BreakerEvent, Event};
use crate::state::Gateway;
use switchyard_routing::health::{Forced, ModelHealth};
use switchyard_types::clock::now_ms;

/// The model's health, or a 404 naming it.
fn model<'g>(gw: &'g Gateway, name: &str) -> Result<&'g Arc<ModelHealth>, ApiError> {
    gw.health
        .get(name)
        .ok_or_else(|| ApiError::no_such("model", name))
}

/// What the model's breaker is as routing sees it: drained, forced, or as observed.
fn effective(h: &ModelHealth) -> &'static str {
    let snap = h.snapshot(Instant::now());
    if snap.drained {
        return "drained";
    }
    snap.forced
        .map_or_else(|| breaker_label(&snap.breaker), Forced::as_str)
}

fn state_json(h: &ModelHealth) -> Value {
    let snap = h.snapshot(Instant::now());
    json!({
        "model": h.model().as_str(),
        "drained": snap.drained,
        "forced": snap.forced,
        "breaker": breaker_label(&snap.breaker),
        "available": snap.available.is_none(),
        "in_flight": snap.in_flight,
    })
}

fn publish(gw: &Gateway, h: &ModelHealth, from: &'static str, cause: &str) {
    let to = effective(h);
    if from == to {
        return;
    }
    gw.live.publish(Event::Breaker(BreakerEvent {
        ts_ms: now_ms(),
        model: h.model().to_string(),
        from: from.to_owned(),
        to: to.to_owned(),
        cause: cause.to_owned(),
    }));
}

/// `POST /admin/models/{model}/drain`: no new requests; those in flight finish.
pub async fn drain(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let h = model(&gw, &name)?;
    let before = effective(h);
    h.set_drained(true);
    publish(&gw, h, before, "drained");
    tracing::info!(model = %name, "model drained by an operator");
    Ok(Json(state_json(h)))
}

/// `DELETE /admin/models/{model}/drain`: the model takes requests again.
pub async fn undrain(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let h = model(&gw, &name)?;
    let before = effective(h);
    h.set_drained(false);
    publish(&gw, h, before, "drained");
    tracing::info!(model = %name, "model brought back by an operator");
    Ok(Json(state_json(h)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ForceTo {
    Open,
    Closed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceBody {
    /// `open`, `closed`, or `null` (the breaker decides again).
    force: Option<ForceTo>,
}

/// `POST /admin/models/{model}/breaker` `{"force": "open" | "closed" | null}`.
pub async fn force(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let h = model(&gw, &name)?;
    let asked: ForceBody = body_json(&gw, body).await?;
    let forced = asked.force.map(|f| match f {
        ForceTo::Open => Forced::Open,
        ForceTo::Closed => Forced::Closed,
    });
    let before = effective(h);
    h.force(forced);
    publish(&gw, h, before, "forced");
    tracing::info!(model = %name, forced = ?forced, "breaker override set by an operator");
    Ok(Json(state_json(h)))
}

/// `POST /admin/breakers/reset`: every breaker closed with a fresh record, overrides dropped
/// (drains stay).
pub async fn reset(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let mut models = Vec::new();
    for (_, h) in gw.health.iter() {
        let before = effective(h);
        h.reset_breaker();
        publish(&gw, h, before, "forced");
        models.push(state_json(h));
    }
    tracing::info!(models = models.len(), "every breaker reset by an operator");
    Json(json!({"reset": models.len(), "models": models}))
}
