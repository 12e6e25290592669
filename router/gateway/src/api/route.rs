//! `POST /ai/route` and `POST /ai/route/batch`: Switchyard's own API. Same pipeline as
//! `/v1/chat/completions`, with routing controls in the request (route, models, preferences)
//! and the decision explained in the answer (`routing`: every candidate's inputs and score
//! terms, what was filtered and why, every attempt).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::chat::{body_json, sse_chunks};
use crate::config::{Optimize, Weights};
use crate::execute::Primed;
use crate::pipeline::{self, RequestPreferences, Routed, Target};
use crate::state::Gateway;
use switchyard_routing::candidates::{Candidate, Decision};
use switchyard_types::{
    ChatRequest, ChatResponse, Message, ResponseFormat, Role, Tool, ToolChoice,
};

/// Most requests one batch may hold.
pub const MAX_BATCH: usize = 100;
const DEFAULT_BATCH_CONCURRENCY: usize = 8;

/// A `/ai/route` request body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Shorthand for one user message.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A system prompt placed first.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub preferences: Option<PreferencesBody>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// Echoed back in the answer; never sent upstream.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Cache control for this request (`{mode, ttl_s}`).
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub cache: Option<crate::cache::CacheRequest>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    pub optimize: Option<Optimize>,
    pub weights: Option<Weights>,
    pub max_cost_usd: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

impl RouteRequest {
    /// The hub request and routing target, validated; errors name the field.
    fn into_parts(self) -> Result<RouteParts, ApiError> {
        let mut messages = Vec::new();
        if let Some(system) = self.system {
            messages.push(Message::new(Role::System, system));
        }
        match (self.messages, self.prompt) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "give `messages` or `prompt`, not both",
                ));
            }
            (Some(m), None) if m.is_empty() => {
                return Err(ApiError::invalid_param(
                    "messages",
                    "must contain at least one message",
                ));
            }
            (Some(m), None) => messages.extend(m),
            (None, Some(p)) => messages.push(Message::new(Role::User, p)),
            (None, None) => {
                return Err(ApiError::invalid_param(
                    "messages",
                    "give `messages` or `prompt`",
                ));
            }
        }
        let route = self.route.clone();
        let mut request =
            ChatRequest::new(route.clone().unwrap_or_else(|| "auto".into()), messages);
        request.max_tokens = self.max_tokens;
        request.temperature = self.temperature;
        request.stream = self.stream;
        request.response_format = self.response_format;
        request.tools = self.tools;
        request.tool_choice = self.tool_choice;
        request.seed = self.seed;
        request.cache = self.cache;
        request
            .validate()
            .map_err(|(param, message)| ApiError::invalid_param(param, message))?;
        let prefs = match self.preferences {
            None => RequestPreferences::default(),
            Some(p) => {
                let weights = match (p.optimize, p.weights) {
                    (Some(_), Some(_)) => {
                        return Err(ApiError::invalid_param(
                            "preferences",
                            "give `optimize` or `weights`, not both",
                        ));
                    }
                    (Some(o), None) => Some(o.weights()),
                    (None, Some(w)) => {
                        w.validate()
                            .map_err(|e| ApiError::invalid_param("preferences.weights", e))?;
                        Some(w)
                    }
                    (None, None) => None,
                };
                for (name, v) in [
                    ("preferences.max_cost_usd", p.max_cost_usd),
                    ("preferences.max_latency_ms", p.max_latency_ms),
                ] {
                    if let Some(v) = v
                        && !(v.is_finite() && v > 0.0)
                    {
                        return Err(ApiError::invalid_param(name, "must be a positive number"));
                    }
                }
                RequestPreferences {
                    weights,
                    max_cost_usd: p.max_cost_usd,
                    max_latency_ms: p.max_latency_ms,
                }
            }
        };
        let task = match self.metadata.as_ref().and_then(|m| m.get("task")) {
            None => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(ApiError::invalid_param("metadata.task", "must be a string")),
        };
        Ok(RouteParts {
            request,
            task,
            prefs,
            route,
            models: self.models,
        })
    }
}

/// A `/ai/route` request taken apart: what to send, and how to route it.
struct RouteParts {
    request: ChatRequest,
    /// `metadata.task`: routed on, never sent upstream (the pipeline validates it).
    task: Option<String>,
    prefs: RequestPreferences,
    route: Option<String>,
    models: Option<Vec<String>>,
}

impl RouteParts {
    fn target(&self) -> Target<'_> {
        Target {
            name: self.route.as_deref(),
            models: self.models.as_deref(),
            preferences: Some(self.prefs),
            headers: Vec::new(),
            cache: self.request.cache,
            cache_control: None,
            task: self.task.as_deref(),
        }
    }
}

pub async fn route(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: RouteRequest = body_json(&gw, body).await?;
    handle(&gw, req, &headers).await
}

async fn handle(
    gw: &Gateway,
    req: RouteRequest,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let metadata = req.metadata.clone();
    super::spend::tag_from_metadata(gw, metadata.as_ref())?;
    let parts = req.into_parts()?;
    let mut target = parts.target();
    target.headers = super::policy_headers(headers);
    target.cache_control = super::chat::cache_control(headers);
    if parts.request.stream {
        let routed = pipeline::stream(gw, &parts.request, &target).await?;
        return Ok(sse(routed, gw));
    }
    let routed = pipeline::complete(gw, &parts.request, &target).await?;
    let body = answer(&routed, routed.cost_usd(), metadata);
    Ok(super::json_answer(body, &routed))
}

/// The `/ai/route` answer object.
fn answer(routed: &Routed<ChatResponse>, cost: f64, metadata: Option<Map<String, Value>>) -> Value {
    let r = &routed.value;
    let choice = r.choices.first();
    json!({
        "id": r.id,
        "model": routed.model,
        "provider": routed.provider,
        "route": routed.route,
        "message": choice.map(|c| &c.message),
        "finish_reason": choice.map(|c| c.finish_reason),
        "usage": r.usage,
        "cost_usd": cost,
        "latency_ms": routed.latency.as_secs_f64() * 1000.0,
        "attempts": routed.attempt_count(),
        "cached": routed.cache == crate::cache::Outcome::Hit,
        "cache": routed.cache,
        "routing": routing_json(&routed.decision, routed),
        "metadata": metadata,
    })
}

/// The explanation: ranked candidates (eligible first), the choice, the reason, the attempts.
pub fn routing_json<T>(decision: &Decision, routed: &Routed<T>) -> Value {
    let mut v = decision_json(decision);
    v["chosen"] = json!(routed.model);
    v["attempts"] = json!(routed.attempts);
    if let Some(hedge) = &routed.hedge {
        v["hedge"] = json!(hedge);
    }
    if let Some(shadow) = &routed.shadow {
        v["shadow"] = json!(shadow);
    }
    if !routed.policies.is_empty() {
        v["policies"] = json!(routed.policies);
    }
    v
}

pub fn decision_json(decision: &Decision) -> Value {
    let mut v = json!({
        "route": decision.route,
        "weights": decision.weights,
        "candidates": decision.candidates.iter().map(candidate_json).collect::<Vec<_>>(),
        "chosen": decision.chosen().map(|c| &c.model),
        "reason": decision.reason(),
    });
    if let Some(split) = &decision.split {
        v["split"] = json!(split);
    }
    v
}

fn candidate_json(c: &Candidate) -> Value {
    let mut v = json!({
        "model": c.model,
        "provider": c.provider,
        "score": c.score(),
        "cost_usd": c.cost_usd,
        "latency_ms": c.latency_ms,
        "reliability": c.reliability,
        "prompt_tokens": c.prompt_tokens,
        "prompt_tokens_exact": c.prompt_tokens_exact,
        "expected_output_tokens": c.expected_output_tokens,
        "in_flight": c.in_flight,
        "quality": c.quality,
        "quality_evidence": c.quality_evidence,
        "quality_basis": c.quality_basis,
    });
    if let Some(t) = c.terms {
        v["expected_cost_usd"] = json!(t.expected_cost_usd);
        v["expected_latency_ms"] = json!(t.expected_latency_ms);
        v["terms"] = json!({
            "cost": t.cost,
            "latency": t.latency,
            "reliability": t.reliability,
            "quality": t.quality,
        });
    }
    if let Some(f) = &c.filtered {
        v["filtered"] = json!(f.detail);
        v["filter"] = json!(f.reason);
    }
    v
}

/// Streaming `/ai/route`: an `event: routing` frame with the decision, then the answer as
/// OpenAI chunks, then `[DONE]` (or an error event if the upstream broke mid-answer).
fn sse(routed: Routed<Primed>, gw: &Gateway) -> Response {
    let mut routing = routing_json(&routed.decision, &routed);
    routing["provider"] = json!(routed.provider);
    let first = Bytes::from(format!("event: routing\ndata: {routing}\n\n"));
    sse_chunks(routed, true, Some(first), gw)
}

/// The ranked candidates for a request body, without calling any model: a `/ai/route` body, or
/// an OpenAI chat body whose `model` names a model or route. For `switchyard route --explain`.
pub fn explain(gw: &Gateway, body: &[u8]) -> Result<Value, ApiError> {
    let probe: Value = super::chat::parse_json(body)?;
    let parts = if probe.get("model").is_some() {
        let request = super::chat::parse_request(body)?;
        RouteParts {
            route: Some(request.model.clone()),
            task: None,
            request,
            prefs: RequestPreferences::default(),
            models: None,
        }
    } else {
        super::chat::parse_json::<RouteRequest>(body)?.into_parts()?
    };
    let (_, decision) = pipeline::plan(gw, &parts.request, &parts.target())?;
    Ok(decision_json(&decision))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub requests: Vec<Value>,
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `POST /ai/route/batch`: each request routed on its own, at most `concurrency` at a time,
/// results in input order; one failure is that item's error, not the batch's.
pub async fn batch(State(gw): State<Arc<Gateway>>, body: Body) -> Result<Json<Value>, ApiError> {
    let batch: BatchRequest = body_json(&gw, body).await?;
    if batch.requests.is_empty() || batch.requests.len() > MAX_BATCH {
        return Err(ApiError::invalid_param(
            "requests",
            format!(
                "must hold 1 to {MAX_BATCH} requests, got {}",
                batch.requests.len()
            ),
        ));
    }
    let concurrency = batch.concurrency.unwrap_or(DEFAULT_BATCH_CONCURRENCY);
    if concurrency == 0 || concurrency > 32 {
        return Err(ApiError::invalid_param(
            "concurrency",
            "must be between 1 and 32",
        ));
    }
    let gw = &gw;
    let results: Vec<Value> = futures::stream::iter(batch.requests.into_iter().enumerate())
        .map(|(i, item)| async move {
            let outcome = match serde_json::from_value::<RouteRequest>(item) {
                Err(e) => Err(ApiError::invalid_param(format!("requests[{i}]"), e)),
                Ok(r) if r.stream => Err(ApiError::invalid_param(
                    format!("requests[{i}].stream"),
                    "batch items cannot stream",
                )),
                Ok(r) => handle_one(gw, r).await,
            };
            match outcome {
                Ok(v) => json!({"index": i, "status": 200, "response": v}),
                Err(e) => {
                    json!({"index": i, "status": e.status.as_u16(), "error": e.body()["error"]})
                }
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r["status"] != 200).count();
    Ok(Json(
        json!({"results": results, "succeeded": results.len() - failed, "failed": failed}),
    ))
}

async fn handle_one(gw: &Gateway, req: RouteRequest) -> Result<Value, ApiError> {
    let metadata = req.metadata.clone();
    let parts = req.into_parts()?;
    let routed = pipeline::complete(gw, &parts.request, &parts.target()).await?;
    let cost = routed.cost_usd();
    Ok(answer(&routed, cost, metadata))
}
