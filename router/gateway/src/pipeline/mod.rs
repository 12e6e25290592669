//! THE ORDER OF STEPS for one chat request. Only this file knows it:
//!
//! admit (api/: key, RPM, parse) → target (route or model, within the key's allow-lists) →
//! count + candidates + score (routing/), the route's split arm first (split.rs) → policies
//! (policy/ → plugins/host: edits, vetoes, context fit re-checked) → cache (hit: answer now;
//! miss: lead, or wait for an identical request in flight) → reserve (the key's budget and
//! TPM) → execute (attempt loop with retries and fallback; health recorded there) → record
//! (settle the reservation with the real cost, fill the cache, fill the exchange; the log row
//! is written when the answer ends) → respond; once the answer is complete (a stream: ended),
//! the split arm's counters and the route's shadow copy (after.rs → shadow.rs).

mod after;
mod cache_step;
mod charge;
mod outcome;
mod shadow;
mod split;
mod tap;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cache::{self, CacheRequest, Leader, Lookup, Outcome};
use crate::config::{DEFAULT_ROUTE, RouteConfig};
use crate::error::Error;
use crate::exchange::Exchange;
use crate::execute::{self, Attempt, Failure, Primed, Success};
use crate::keys::{KeyState, Reservation};
use crate::policy::{self, Applied, PolicyRun};
use crate::state::Gateway;
use crate::telemetry::Stage;
use cache_step::{CacheStep, CacheWrite, from_cache, replay_events};
use charge::{InFlight, estimate, reserve};
use outcome::{attempt_records, failed, no_candidate, policy_records, routed};
use switchyard_routing::candidates::{self, Decision, FilterReason, Preferences};
use switchyard_routing::catalog::CatalogEntry;
use switchyard_routing::quality;
use switchyard_store::{AttemptRecord, PolicyRecord};
use switchyard_types::ids::{ModelId, ProviderId};
use switchyard_types::{ChatRequest, ChatResponse, StreamAccumulator, StreamEvent, Usage, new_id};
use tap::Tap;

pub use shadow::{ShadowNote, Shadows};

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
    /// `cache` from the body.
    pub cache: Option<CacheRequest>,
    /// The request's `Cache-Control` header.
    pub cache_control: Option<String>,
    /// A task tag given beside the hub request (`/ai/route`'s `metadata.task`); otherwise the
    /// request's own `metadata.task` is read.
    pub task: Option<&'a str>,
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
    /// Whether the answer came from the cache.
    pub cache: Outcome,
    /// What the answer cost (from the provider's usage), picodollars; 0 until a stream ends.
    pub cost_picousd: i64,
    /// The hedge, on a hedged route whose first attempt was slow.
    pub hedge: Option<execute::HedgeReport>,
    /// The route's shadow, on a route with one: whether this request was sampled for a copy.
    pub shadow: Option<ShadowNote>,
}

impl<T> Routed<T> {
    /// What this answer cost, USD (nothing from the cache; for a stream, known only at its end).
    pub fn cost_usd(&self) -> f64 {
        switchyard_types::money::pico_to_usd(self.cost_picousd)
    }

    /// Upstream calls made (skipped candidates are not attempts).
    pub fn attempt_count(&self) -> usize {
        execute::upstream_calls(&self.attempts)
    }
}

/// The router's count of the prompt for the model that answered.
pub fn prompt_tokens(decision: &Decision, model: &ModelId) -> u32 {
    decision
        .candidates
        .iter()
        .find(|c| &c.model == model)
        .map_or(0, |c| c.prompt_tokens)
}

/// The candidates for a request, ranked, without calling anything (`route --explain` too).
pub fn plan<'g>(
    gw: &'g Gateway,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<(Cow<'g, RouteConfig>, Decision), Error> {
    let name = target.name.unwrap_or(DEFAULT_ROUTE);
    let route = if let Some(r) = gw.config.routes.get(name) {
        Cow::Borrowed(r)
    } else if let Some(m) = gw.config.models.get(name) {
        Cow::Owned(RouteConfig::single(m.id.clone()))
    } else {
        let mut names: Vec<&str> = gw.config.models.keys().map(ModelId::as_str).collect();
        names.extend(gw.config.routes.keys().map(String::as_str));
        return Err(Error::model_not_found(name, &names));
    };
    let exchange = crate::exchange::current();
    let key = exchange.as_ref().and_then(|e| e.key.as_ref());
    if let Some(key) = key
        && !key.allows_route(name)
    {
        return Err(Error::forbidden(
            Some("model".into()),
            format!("Key '{}' may not use '{name}'", key.id()),
        ));
    }
    let models: Cow<'_, [ModelId]> = match target.models {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::new();
            for (i, m) in list.iter().enumerate() {
                match gw.config.models.get(m.as_str()) {
                    Some(cfg) => out.push(cfg.id.clone()),
                    None => {
                        return Err(Error::invalid_param(
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
    let models = match key {
        Some(key) => allowed_models(key, name, &route, target.models, models)?,
        None => models,
    };
    let task = match target.task {
        Some(t) => quality::valid_task(t).map(Some),
        None => quality::task_tag(request),
    }
    .map_err(|m| Error::invalid_param("metadata.task", m))?;
    // `[log] tags` from the body's `metadata` (Chat Completions passes it through in `extra`).
    let tags = gw
        .config
        .log
        .metadata_tags(request.extra.get("metadata"))
        .map_err(|(param, m)| Error::invalid_param(param, m))?;
    let p = target.preferences.unwrap_or_default();
    let prefs = Preferences {
        weights: p.weights.unwrap_or(route.weights),
        max_cost_usd: p.max_cost_usd,
        max_latency_ms: p.max_latency_ms,
        // Routing policies are prompt policies: they may drop, insert or rewrite messages, and
        // an embeddings request's messages are its inputs, one vector each. They do not run.
        defer_context: request.embed.is_none()
            && policy::active_for(gw.policies.as_ref(), &route.name),
    };
    let started = Instant::now();
    let decision = candidates::decide(
        &gw.config.models,
        &gw.health,
        quality::Lookup {
            quality: &gw.quality,
            task,
        },
        &route,
        &models,
        request,
        &prefs,
        Instant::now(),
    );
    if let Some(ex) = &exchange {
        ex.stage(Stage::Count, decision.count_time);
        ex.stage(
            Stage::Route,
            started.elapsed().saturating_sub(decision.count_time),
        );
        ex.set_route(&route.name, request.stream);
        ex.set_task(task);
        ex.add_tags(tags).map_err(|name| {
            Error::invalid_param(
                format!("metadata.{name}"),
                "differs from the x-switchyard-tags header's value",
            )
        })?;
    }
    if decision.eligible().is_empty() {
        crate::telemetry::otel::routed(exchange.as_deref(), started, &decision, name, request);
        return Err(no_candidate(&decision, &gw.health));
    }
    let decision = split::assign(&route, request, key, decision);
    crate::telemetry::otel::routed(exchange.as_deref(), started, &decision, name, request);
    Ok((route, decision))
}

/// The candidates a key may reach, however the request names them: a key limited to models
/// keeps only those; a key limited to routes keeps only the route's models, so `models` in a
/// request cannot reach past the route. A model the request names explicitly and the key may not
/// use is refused by name (403) rather than silently dropped.
fn allowed_models<'m>(
    key: &KeyState,
    name: &str,
    route: &RouteConfig,
    named: Option<&[String]>,
    models: Cow<'m, [ModelId]>,
) -> Result<Cow<'m, [ModelId]>, Error> {
    let by_route = !key.record.routes.is_empty();
    if key.record.models.is_empty() && !by_route {
        return Ok(models);
    }
    let allowed = |m: &str| {
        key.allows_model(m) && (!by_route || route.models.iter().any(|r| r.as_str() == m))
    };
    if let Some(list) = named
        && let Some((i, m)) = list.iter().enumerate().find(|(_, m)| !allowed(m))
    {
        return Err(Error::forbidden(
            Some(format!("models[{i}]")),
            format!(
                "Key '{}' may not use model '{m}'{}",
                key.id(),
                if by_route {
                    format!(" (it is not a model of route '{name}')")
                } else {
                    String::new()
                }
            ),
        ));
    }
    if models.iter().all(|m| allowed(m.as_str())) {
        return Ok(models);
    }
    let kept: Vec<ModelId> = models
        .iter()
        .filter(|m| allowed(m.as_str()))
        .cloned()
        .collect();
    if kept.is_empty() {
        let refused: Vec<&str> = models.iter().map(ModelId::as_str).collect();
        return Err(Error::forbidden(
            Some("model".into()),
            format!(
                "Key '{}' may not use model '{}' (none of the models of '{name}' is allowed: {})",
                key.id(),
                refused.first().copied().unwrap_or(name),
                refused.join(", ")
            ),
        ));
    }
    Ok(Cow::Owned(kept))
}

/// The plan with the route's policies applied: the request as they left it, the candidates as
/// they ordered and vetoed them, and what each did.
pub fn plan_with_policies<'g, 'r>(
    gw: &'g Gateway,
    request: &'r ChatRequest,
    target: &Target<'_>,
) -> Result<Planned<'g, 'r>, Error> {
    // Every caller's `cache` control is checked here (chat, /ai/route and batch items alike).
    if let Some(c) = &target.cache {
        c.validate(gw.cache.config().max_ttl_s)
            .map_err(|(param, message)| Error::invalid_param(param, message))?;
    }
    let (route, mut decision) = plan(gw, request, target)?;
    let mut request = Cow::Borrowed(request);
    let applied = match &gw.policies {
        Some(registry) if decision.deferred_context => {
            let started = Instant::now();
            let exchange = crate::exchange::current();
            let own_id;
            let request_id = match &exchange {
                Some(ex) => ex.id.as_str(),
                None => {
                    own_id = new_id("req_");
                    own_id.as_str()
                }
            };
            let caller = policy::Caller {
                request_id,
                tenant: exchange.as_ref().map_or("", |e| e.scope()),
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
            );
            if let Some(ex) = &exchange {
                ex.stage(Stage::Policy, started.elapsed());
            }
            let runs = applied.as_ref().map_or(&[][..], |a| a.runs.as_slice());
            crate::telemetry::otel::policies(exchange.as_deref(), started, runs);
            let applied = applied?;
            if decision.eligible().is_empty() {
                return Err(no_candidate(&decision, &gw.health));
            }
            applied
        }
        _ => Applied::default(),
    };
    if gw.live.has_subscribers()
        && crate::live::decisions::sampled(gw.config.live.decision_sample)
        && let Some(ex) = crate::exchange::current()
    {
        ex.decided(crate::live::decisions::Mark::of(&decision));
    }
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
) -> Result<Routed<ChatResponse>, Error> {
    let p = plan_with_policies(gw, request, target)?;
    let exchange = crate::exchange::current();
    let ex = exchange.as_deref();
    let mut step = CacheStep::begin(gw, &p, target).await;
    if let Some(entry) = step.hit.take() {
        let mut response = entry.response.clone();
        response.id = new_id("chatcmpl-");
        response.created = switchyard_types::unix_now();
        return Ok(from_cache(response, &entry, p, ex));
    }
    let est = estimate(gw, &p.decision, &p.request);
    let reservation = reserve(gw, &est).await?;
    let in_flight = InFlight::new(reservation, exchange.clone(), est.cost, est.usage);
    let after = after::After::new(gw, &p, exchange.as_ref());
    let result = execute::complete(gw.upstreams(), &p.route, &p.decision, &p.request).await;
    let mut reservation = in_flight.done();
    if let Err(f) = &result {
        settle_failed(reservation.take(), ex, &f.attempts);
    }
    match result {
        Ok(mut s) => {
            let entry = model_entry(gw, &s.model);
            let Settled { cost, billed } = settle_answer(
                &mut s,
                request,
                &p.decision,
                entry,
                reservation,
                ex,
                policy_records(&p.applied.runs),
            );
            crate::telemetry::otel::answered(ex, &s.value);
            let shadow = after.note();
            after.answered(&s.model, s.latency, cost + billed);
            let ttl = step.ttl();
            step.store(gw, ex, || {
                let mut r = s.value.clone();
                r.model = s.model.to_string();
                cache::Entry::new(r, s.model.clone(), s.provider.clone(), ttl)
            });
            Ok(routed(
                s,
                p.route.name.clone(),
                p.decision,
                p.applied,
                step.outcome,
                cost,
                shadow,
            ))
        }
        Err(f) => Err(failed(f, ex, &gw.health)),
    }
}

/// A streamed answer, primed: some candidate's first content token has arrived, nothing has
/// been sent to the client yet. From the cache, the whole answer is replayed as events.
pub async fn stream(
    gw: &Gateway,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<Routed<Primed>, Error> {
    let p = plan_with_policies(gw, request, target)?;
    let exchange = crate::exchange::current();
    let ex = exchange.as_deref();
    let mut step = CacheStep::begin(gw, &p, target).await;
    if let Some(entry) = step.hit.take() {
        let events = replay_events(&entry.response);
        let primed = Primed {
            head: events.into(),
            tail: Box::pin(futures::stream::empty()),
        };
        return Ok(from_cache(primed, &entry, p, ex));
    }
    let est = estimate(gw, &p.decision, &p.request);
    let reservation = reserve(gw, &est).await?;
    let in_flight = InFlight::new(
        reservation,
        exchange.clone(),
        est.prompt_cost,
        est.prompt_usage,
    );
    let after = after::After::new(gw, &p, exchange.as_ref());
    let result = execute::streamed(gw.upstreams(), &p.route, &p.decision, &p.request).await;
    let mut reservation = in_flight.done();
    if let Err(f) = &result {
        settle_failed(reservation.take(), ex, &f.attempts);
    }
    match result {
        Ok(mut s) => {
            let billed = charge_failed_attempts(ex, &s.attempts);
            if let Some(ex) = ex {
                ex.routed(
                    &s.model,
                    &s.provider,
                    attempt_records(&s.attempts),
                    policy_records(&p.applied.runs),
                );
                ex.first_token(s.latency);
            }
            let prompt_tokens = prompt_tokens(&p.decision, &s.model);
            let shadow = after.note();
            let tap = Tap {
                exchange: exchange.clone(),
                reservation,
                entry: model_entry(gw, &s.model).cloned(),
                model: s.model.clone(),
                provider: s.provider.clone(),
                prompt_tokens,
                acc: StreamAccumulator::default(),
                store: step.write_handle(gw),
                finished: false,
                cut: None,
                billed,
                after: Some(after.primed(&s.model, s.latency)),
            };
            let limits = execute::PumpLimits {
                write_stall: gw.config.server.write_stall,
                abort: gw.abort.clone(),
            };
            s.value = tap.wrap(s.value, limits);
            let outcome = step.outcome;
            Ok(routed(
                s,
                p.route.name.clone(),
                p.decision,
                p.applied,
                outcome,
                0,
                shadow,
            ))
        }
        Err(f) => Err(failed(f, ex, &gw.health)),
    }
}

/// What a complete answer cost (picodollars): the answer, and the failed attempts before it
/// that the provider may have billed.
struct Settled {
    cost: i64,
    billed: i64,
}

/// A complete answer's accounting: its usage (the router's own prompt count when the provider
/// reports none, as Gemini's embeddings do), its price, the reservation settled with it and the
/// failed attempts, and the exchange told which model answered and what it used.
fn settle_answer(
    s: &mut Success<ChatResponse>,
    request: &ChatRequest,
    decision: &Decision,
    entry: Option<&CatalogEntry>,
    reservation: Option<Reservation>,
    ex: Option<&Exchange>,
    policies: Vec<PolicyRecord>,
) -> Settled {
    if request.embed.is_some() && s.value.usage.prompt_tokens == 0 {
        s.value.usage = Usage::new(prompt_tokens(decision, &s.model), 0);
    }
    let cost = entry.map_or(0, |e| e.usage_cost_pico(&s.value.usage));
    let billed = charge_failed_attempts(ex, &s.attempts);
    if let Some(r) = reservation {
        r.settle(cost + billed, u64::from(s.value.usage.total_tokens));
    }
    if let Some(ex) = ex {
        ex.routed(
            &s.model,
            &s.provider,
            attempt_records(&s.attempts),
            policies,
        );
        ex.answered(&s.value.usage, cost, false);
    }
    Settled { cost, billed }
}

/// Record on the exchange what the failed attempts the provider may have billed cost (flagged
/// as estimated); returns the picodollars, for the key's settlement.
fn charge_failed_attempts(ex: Option<&Exchange>, attempts: &[Attempt]) -> i64 {
    let Some((usage, cost)) = execute::charged(attempts) else {
        return 0;
    };
    if let Some(ex) = ex {
        ex.answered(&usage, cost, true);
    }
    cost
}

/// Every attempt failed: the key pays only for those the provider may have billed.
fn settle_failed(reservation: Option<Reservation>, ex: Option<&Exchange>, attempts: &[Attempt]) {
    let billed = charge_failed_attempts(ex, attempts);
    if let Some(r) = reservation {
        r.settle(billed, 0);
    }
}

fn model_entry<'g>(gw: &'g Gateway, model: &ModelId) -> Option<&'g CatalogEntry> {
    gw.config.models.get(model).map(|m| &m.entry)
}
