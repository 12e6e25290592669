//! Read-only views of the live state: `GET /ai/models` (catalog facts plus live health inputs),
//! `GET /ai/performance` (recent-window figures per model), `GET /health/detailed` (breakers and
//! last errors, per provider and model).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::redact;
use crate::keys::Caller;
use crate::state::Gateway;
use switchyard_routing::health::BreakerState;
use switchyard_store::RequestLog;

/// Per-model figures from the request log (all replicas sharing the store, surviving
/// restarts): the last 24 hours.
async fn history(gw: &Gateway) -> BTreeMap<String, Value> {
    let Some(store) = &gw.store else {
        return BTreeMap::new();
    };
    let since = switchyard_types::clock::now_ms() - 24 * 3_600_000;
    match RequestLog::model_history(store, since).await {
        Ok(rows) => rows
            .into_iter()
            .map(|h| {
                let v = json!({
                    "window": "24h",
                    "requests": h.requests,
                    "errors": h.errors,
                    "error_rate": if h.requests > 0 { h.errors as f64 / h.requests as f64 } else { 0.0 },
                    "avg_latency_ms": h.avg_latency_ms,
                    "avg_ttft_ms": h.avg_ttft_ms,
                    "prompt_tokens": h.prompt_tokens,
                    "completion_tokens": h.completion_tokens,
                    "cost_usd": switchyard_types::money::pico_to_usd(h.cost_picousd),
                    "cache_hits": h.cache_hits,
                });
                (h.model, v)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read model history from the store");
            BTreeMap::new()
        }
    }
}

pub async fn models(
    State(gw): State<Arc<Gateway>>,
    caller: Option<Extension<Caller>>,
) -> Json<Value> {
    let mut history = history(&gw).await;
    let now = Instant::now();
    let data: Vec<Value> = gw
        .config
        .models
        .values()
        .map(|m| {
            let e = &m.entry;
            json!({
                "id": m.id,
                "provider": m.provider,
                "upstream": m.upstream,
                "kind": e.kind,
                "context_window": e.context_window,
                "max_output_tokens": e.max_output,
                "tokenizer": e.tokenizer,
                "capabilities": e.capabilities,
                "pricing": {
                    "input_per_1m": e.input,
                    "output_per_1m": e.output,
                    "cached_input_per_1m": e.cached_input,
                    "cache_write_per_1m": e.cache_write,
                    "long_context": e.long_context,
                },
                "deprecated": e.deprecated,
                "health": gw.health.get(m.id.as_str()).map(|h| h.snapshot(now)),
                "history": history.remove(m.id.as_str()),
                "routes": gw.config.routes.values()
                    .filter(|r| r.models.contains(&m.id))
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut body = json!({"models": data});
    redact::for_caller(caller.as_deref(), &mut body);
    Json(body)
}

/// Live windows (this process, recent seconds) next to the store's history (24 h, every
/// replica, surviving restarts).
pub async fn performance(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let mut history = history(&gw).await;
    let now = Instant::now();
    let mut out = BTreeMap::new();
    let cells = gw.quality.cells(now);
    let prior = gw.quality.prior();
    for (id, h) in gw.health.iter() {
        let snapshot = h.snapshot(now);
        let mut perf = json!(h.performance(now));
        perf["breaker"] = json!(snapshot.breaker);
        perf["reliability"] = json!(snapshot.reliability);
        perf["in_flight"] = json!(snapshot.in_flight);
        perf["history"] = history.remove(id.as_str()).unwrap_or(Value::Null);
        perf["quality"] = super::feedback::performance(id.as_str(), &cells, prior);
        out.insert(id.to_string(), perf);
    }
    Json(json!({
        "models": out,
        "splits": splits(&gw),
        "store": gw.store.as_ref().map(switchyard_store::Store::backend),
    }))
}

/// Each split route's arms since start (this process): the configured share next to the share
/// of the route's placed requests the arm got, and how its requests went. An arm's `successes`
/// are answers by its own model (`fallbacks`: by another after it failed), `avg_latency_ms` is
/// over those (to the first token for streams), `cost_usd` over all its requests. The model's
/// own live figures are under `models`.
fn splits(gw: &Gateway) -> Value {
    let mut out = serde_json::Map::new();
    for (route, arms) in gw.arms.snapshot() {
        let Some(split) = gw.config.routes.get(route).and_then(|r| r.split.as_ref()) else {
            continue;
        };
        let total: u64 = arms.values().map(|c| c.requests).sum();
        let ratio = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        let arms: serde_json::Map<String, Value> = arms
            .into_iter()
            .map(|(model, c)| {
                let answered = c.successes + c.fallbacks;
                let cost = switchyard_types::money::pico_to_usd(c.cost_picousd);
                let v = json!({
                    "share": split.share_of(model),
                    "observed_share": ratio(c.requests, total),
                    "requests": c.requests,
                    "successes": c.successes,
                    "fallbacks": c.fallbacks,
                    "failures": c.failures,
                    "success_rate": ratio(c.successes, c.requests),
                    "avg_latency_ms": (c.successes > 0)
                        .then(|| c.latency_ms_sum / c.successes as f64),
                    "cost_usd": cost,
                    "avg_cost_usd": (answered > 0).then(|| cost / answered as f64),
                });
                (model.to_string(), v)
            })
            .collect();
        out.insert(
            route.to_owned(),
            json!({"split_by": split.by, "requests": total, "arms": arms}),
        );
    }
    Value::Object(out)
}

pub async fn detailed(
    State(gw): State<Arc<Gateway>>,
    caller: Option<Extension<Caller>>,
) -> Json<Value> {
    let now = Instant::now();
    let mut providers = BTreeMap::new();
    let mut open = 0;
    for (id, settings) in &gw.config.providers {
        let models: Vec<Value> = gw
            .config
            .models
            .values()
            .filter(|m| &m.provider == id)
            .map(|m| {
                let s = gw.health.get(m.id.as_str()).map(|h| h.snapshot(now));
                if s.as_ref()
                    .is_some_and(|s| !matches!(s.breaker, BreakerState::Closed))
                {
                    open += 1;
                }
                json!({
                    "model": m.id,
                    "breaker": s.as_ref().map(|s| s.breaker),
                    "available": s.as_ref().map(|s| s.available.is_none()),
                    "unavailable": s.as_ref().and_then(|s| s.available),
                    "consecutive_failures": s.as_ref().map(|s| s.consecutive_failures),
                    "reliability": s.as_ref().map(|s| s.reliability),
                    "last_error": s.as_ref().and_then(|s| s.last_error.clone()),
                    "last_error_age_s": s.as_ref().and_then(|s| s.last_error_age_s),
                })
            })
            .collect();
        providers.insert(
            id.to_string(),
            json!({"kind": settings.kind.as_str(), "models": models}),
        );
    }
    let mut body = json!({
        "status": if open == 0 { "ok" } else { "degraded" },
        "open_breakers": open,
        "uptime_s": gw.started_at.elapsed().as_secs(),
        "tokenizers_loaded": switchyard_routing::tokens::is_loaded(),
        "providers": providers,
    });
    redact::for_caller(caller.as_deref(), &mut body);
    Json(body)
}
