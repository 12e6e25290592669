//! THE ORDER OF STEPS for one chat request. Only this file knows it:
//!
//! admit (api/) → target (route or model) → count + candidates + score (routing/) →
//! policies (policy/ → plugins/host: edits, vetoes, context fit re-checked) →
//! execute (attempt loop with retries and fallback) → record (health, in execute) → respond.
//!
//! Still to slot in: cache (after policies, before execute).

use std::borrow::Cow;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::ApiError;
use crate::config::{DEFAULT_ROUTE, RouteConfig};
use crate::execute::{self, Attempt, Failure, Primed, Success};
use crate::ids::{ModelId, ProviderId};
use crate::policy::{self, Applied, PolicyRun};
use crate::routing::candidates::{self, Decision, FilterReason, Preferences};
use crate::state::Gateway;
use crate::types::{ChatRequest, ChatResponse, new_id};

/// What to route over: a route name or a model name, optionally narrowed to some models, with
/// the request's own preferences.
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    /// A route or a model; `None` = the default route.
    pub name: Option<&'a str>,
    /// Restrict (and order) the candidates to these models.
    pub models: Option<&'a [String]>,
    pub preferences: Option<RequestPreferences>,
    /// Request headers policies may see (see `policy::visible_header`).
    pub headers: Vec<(String, String)>,
}

/// `preferences` in a request: override the route's weights and add limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestPreferences {
    pub weights: Option<crate::config::Weights>,
    pub max_cost_usd: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

/// A routed answer and how it came about.
pub struct Routed<T> {
    pub value: T,
    pub model: ModelId,
    pub provider: ProviderId,
    pub route: String,
    pub attempts: Vec<Attempt>,
    pub decision: Decision,
    /// To the answer, or to the first token when streaming.
    pub latency: Duration,
    /// What each routing policy did.
    pub policies: Vec<PolicyRun>,
    /// Headers the policies add to the answer.
    pub headers: Vec<(String, String)>,
}

impl<T> Routed<T> {
    /// Upstream calls made (skipped candidates are not attempts).
    pub fn attempt_count(&self) -> usize {
        execute::upstream_calls(&self.attempts)
    }
}

/// The candidates for a request, ranked, without calling anything (`route --explain` too).
pub fn plan<'g>(
    gw: &'g Gateway,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<(Cow<'g, RouteConfig>, Decision), ApiError> {
    let name = target.name.unwrap_or(DEFAULT_ROUTE);
    let route = if let Some(r) = gw.config.routes.get(name) {
        Cow::Borrowed(r)
    } else if let Some(m) = gw.config.models.get(name) {
        Cow::Owned(RouteConfig::single(m.id.clone()))
    } else {
        let mut names: Vec<&str> = gw.config.models.keys().map(ModelId::as_str).collect();
        names.extend(gw.config.routes.keys().map(String::as_str));
        return Err(ApiError::model_not_found(name, &names));
    };
    let models: Cow<'_, [ModelId]> = match target.models {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::new();
            for (i, m) in list.iter().enumerate() {
                match gw.config.models.get(m.as_str()) {
                    Some(cfg) => out.push(cfg.id.clone()),
                    None => {
                        return Err(ApiError::invalid_param(
                            format!("models[{i}]"),
                            format!("no model named '{m}'"),
                        ));
                    }
                }
            }
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(route.models.as_slice()),
    };
    let p = target.preferences.unwrap_or_default();
    let prefs = Preferences {
        weights: p.weights.unwrap_or(route.weights),
        max_cost_usd: p.max_cost_usd,
        max_latency_ms: p.max_latency_ms,
        defer_context: policy::active_for(gw.policies.as_ref(), &route.name),
    };
    let decision = candidates::decide(
        &gw.config,
        &gw.health,
        &route,
        &models,
        request,
        &prefs,
        Instant::now(),
    );
    if decision.eligible().is_empty() {
        return Err(no_candidate(&decision));
    }
    Ok((route, decision))
}

/// The plan with the route's policies applied: the request as they left it, the candidates as
/// they ordered and vetoed them, and what each did.
pub fn plan_with_policies<'g, 'r>(
    gw: &'g Gateway,
    request: &'r ChatRequest,
    target: &Target<'_>,
) -> Result<Planned<'g, 'r>, ApiError> {
    let (route, mut decision) = plan(gw, request, target)?;
    let mut request = Cow::Borrowed(request);
    let applied = match &gw.policies {
        Some(registry) if decision.deferred_context => {
            let request_id = new_id("req");
            let caller = policy::Caller {
                request_id: &request_id,
                tenant: "",
                headers: &target.headers,
                max_cost_usd: target.preferences.and_then(|p| p.max_cost_usd),
            };
            let applied = policy::apply(
                registry,
                &gw.config,
                &route,
                &mut request,
                &mut decision,
                &caller,
            )?;
            if decision.eligible().is_empty() {
                return Err(no_candidate(&decision));
            }
            applied
        }
        _ => Applied::default(),
    };
    Ok(Planned {
        route,
        decision,
        request,
        applied,
    })
}

/// A request ready to execute.
pub struct Planned<'g, 'r> {
    pub route: Cow<'g, RouteConfig>,
    pub decision: Decision,
    pub request: Cow<'r, ChatRequest>,
    pub applied: Applied,
}

/// A complete answer.
pub async fn complete(
    gw: &Gateway,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<Routed<ChatResponse>, ApiError> {
    let p = plan_with_policies(gw, request, target)?;
    match execute::complete(gw, &p.route, &p.decision, &p.request).await {
        Ok(s) => Ok(routed(s, p.route.name.clone(), p.decision, p.applied)),
        Err(f) => Err(failed(f)),
    }
}

/// A streamed answer, primed: some candidate's first content token has arrived, nothing has
/// been sent to the client yet.
pub async fn stream(
    gw: &Gateway,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<Routed<Primed>, ApiError> {
    let p = plan_with_policies(gw, request, target)?;
    match execute::streamed(gw, &p.route, &p.decision, &p.request).await {
        Ok(s) => Ok(routed(s, p.route.name.clone(), p.decision, p.applied)),
        Err(f) => Err(failed(f)),
    }
}

fn routed<T>(s: Success<T>, route: String, decision: Decision, applied: Applied) -> Routed<T> {
    Routed {
        value: s.value,
        model: s.model,
        provider: s.provider,
        route,
        attempts: s.attempts,
        decision,
        latency: s.latency,
        policies: applied.runs,
        headers: applied.headers,
    }
}

/// No candidate passed the filters. When one model was named, its own filter decides the
/// error (so `tools` on a model without tools is a 400 naming `tools`); otherwise the client
/// gets every model's reason.
fn no_candidate(decision: &Decision) -> ApiError {
    let filtered: Vec<_> = decision
        .candidates
        .iter()
        .filter_map(|c| c.filtered.as_ref().map(|f| (c, f)))
        .collect();
    let detail = filtered
        .iter()
        .map(|(c, f)| format!("{}: {f}", c.model))
        .collect::<Vec<_>>()
        .join("; ");
    let all_health = !filtered.is_empty()
        && filtered
            .iter()
            .all(|(_, f)| f.reason == FilterReason::Health);
    if all_health {
        return ApiError::unavailable(&decision.route, &detail);
    }
    if let [(_, f)] = filtered.as_slice() {
        return if f.reason == FilterReason::Context {
            ApiError::context_length(&f.detail)
        } else {
            ApiError::invalid_param(f.reason.param(), &f.detail)
        };
    }
    ApiError::no_eligible_model(&decision.route, &detail)
}

/// Every attempt failed (or one failed in a way no other model could fix).
fn failed(f: Failure) -> ApiError {
    let Some((model, err)) = f.last else {
        let detail: Vec<String> = f
            .attempts
            .iter()
            .filter_map(|a| a.detail.as_ref().map(|d| format!("{}: {d}", a.model)))
            .collect();
        return ApiError::unavailable("the route", &detail.join("; "));
    };
    let mut api = ApiError::upstream(model.as_str(), &err);
    let tried = execute::upstream_calls(&f.attempts);
    if !f.fail_fast && tried > 1 {
        let summary: Vec<String> = f
            .attempts
            .iter()
            .map(|a| format!("{} ({})", a.model, a.outcome))
            .collect();
        api.message = format!(
            "All {tried} attempts failed: {}. Last: {}",
            summary.join(", "),
            api.message
        );
    }
    api
}
