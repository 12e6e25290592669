//! THE ORDER OF STEPS for one chat request. Only this file knows it:
//!
//! admit (api/: key, RPM, parse) → target (route or model, within the key's allow-lists) →
//! count + candidates + score (routing/) → policies (policy/ → plugins/host: edits, vetoes,
//! context fit re-checked) → cache (hit: answer now; miss: lead, or wait for an identical
//! request in flight) → reserve (the key's budget and TPM) → execute (attempt loop with retries
//! and fallback; health recorded there) → record (settle the reservation with the real cost,
//! fill the cache, fill the exchange; the log row is written when the answer ends) → respond.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::api::ApiError;
use crate::cache::{self, CacheRequest, Leader, Lookup, Outcome};
use crate::catalog::CatalogEntry;
use crate::config::{DEFAULT_ROUTE, RouteConfig};
use crate::exchange::{Exchange, Stage};
use crate::execute::{self, Attempt, Failure, Primed, Success};
use crate::ids::{ModelId, ProviderId};
use crate::keys::Reservation;
use crate::policy::{self, Applied, PolicyRun};
use crate::routing::candidates::{self, Decision, FilterReason, Preferences};
use crate::state::Gateway;
use crate::store::{AttemptRecord, PolicyRecord};
use crate::types::{ChatRequest, ChatResponse, StreamAccumulator, StreamEvent, Usage, new_id};

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
}

impl<T> Routed<T> {
    /// What this answer cost, USD (nothing from the cache; for a stream, known only at its end).
    pub fn cost_usd(&self) -> f64 {
        crate::keys::pico_to_usd(self.cost_picousd)
    }

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
    let exchange = crate::exchange::current();
    let key = exchange.as_ref().and_then(|e| e.key.as_ref());
    if let Some(key) = key
        && !key.allows_route(name)
    {
        return Err(ApiError::forbidden(
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
    let models = match key {
        Some(key) if !key.record.models.is_empty() => {
            if let Some(list) = target.models
                && let Some((i, m)) = list.iter().enumerate().find(|(_, m)| !key.allows_model(m))
            {
                return Err(ApiError::forbidden(
                    Some(format!("models[{i}]")),
                    format!("Key '{}' may not use model '{m}'", key.id()),
                ));
            }
            let allowed: Vec<ModelId> = models
                .iter()
                .filter(|m| key.allows_model(m.as_str()))
                .cloned()
                .collect();
            if allowed.is_empty() {
                return Err(ApiError::forbidden(
                    Some("model".into()),
                    format!("Key '{}' may use none of the models of '{name}'", key.id()),
                ));
            }
            Cow::Owned(allowed)
        }
        _ => models,
    };
    let p = target.preferences.unwrap_or_default();
    let prefs = Preferences {
        weights: p.weights.unwrap_or(route.weights),
        max_cost_usd: p.max_cost_usd,
        max_latency_ms: p.max_latency_ms,
        defer_context: policy::active_for(gw.policies.as_ref(), &route.name),
    };
    let started = Instant::now();
    let decision = candidates::decide(
        &gw.config,
        &gw.health,
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
    }
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
    // Every caller's `cache` control is checked here (chat, /ai/route and batch items alike).
    if let Some(c) = &target.cache {
        c.validate(gw.cache.config())
            .map_err(|(param, message)| ApiError::invalid_param(param, message))?;
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
            let applied = applied?;
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
    let exchange = crate::exchange::current();
    let ex = exchange.as_deref();
    let mut step = CacheStep::begin(gw, &p, target).await;
    if let Some(entry) = step.hit.take() {
        let mut response = entry.response.clone();
        response.id = new_id("chatcmpl-");
        response.created = crate::types::unix_now();
        return Ok(from_cache(response, &entry, p, ex));
    }
    let reservation = reserve(gw, &p)?;
    match execute::complete(gw, &p.route, &p.decision, &p.request).await {
        Ok(s) => {
            let entry = model_entry(gw, &s.model);
            let cost = entry.map_or(0, |e| e.usage_cost_pico(&s.value.usage));
            if let Some(r) = reservation {
                r.settle(cost, u64::from(s.value.usage.total_tokens));
            }
            if let Some(ex) = ex {
                ex.routed(
                    &s.model,
                    &s.provider,
                    attempt_records(&s.attempts),
                    policy_records(&p.applied.runs),
                );
                ex.answered(&s.value.usage, cost, false);
            }
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
            ))
        }
        Err(f) => Err(failed(f, ex)),
    }
}

/// A streamed answer, primed: some candidate's first content token has arrived, nothing has
/// been sent to the client yet. From the cache, the whole answer is replayed as events.
pub async fn stream(
    gw: &Gateway,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<Routed<Primed>, ApiError> {
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
    let reservation = reserve(gw, &p)?;
    match execute::streamed(gw, &p.route, &p.decision, &p.request).await {
        Ok(mut s) => {
            if let Some(ex) = ex {
                ex.routed(
                    &s.model,
                    &s.provider,
                    attempt_records(&s.attempts),
                    policy_records(&p.applied.runs),
                );
                ex.first_token(s.latency);
            }
            let prompt_tokens = p
                .decision
                .candidates
                .iter()
                .find(|c| c.model == s.model)
                .map_or(0, |c| c.prompt_tokens);
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
            };
            s.value = tap.wrap(s.value);
            let outcome = step.outcome;
            Ok(routed(
                s,
                p.route.name.clone(),
                p.decision,
                p.applied,
                outcome,
                0,
            ))
        }
        Err(f) => Err(failed(f, ex)),
    }
}

fn model_entry<'g>(gw: &'g Gateway, model: &ModelId) -> Option<&'g CatalogEntry> {
    gw.config.models.get(model).map(|m| &m.entry)
}

/// An answer from the cache, as a routed answer: no attempts, nothing spent.
fn from_cache<T>(
    value: T,
    entry: &cache::Entry,
    p: Planned<'_, '_>,
    ex: Option<&Exchange>,
) -> Routed<T> {
    if let Some(ex) = ex {
        ex.routed(
            &entry.model,
            &entry.provider,
            Vec::new(),
            policy_records(&p.applied.runs),
        );
        ex.first_token(ex.started.elapsed());
    }
    Routed {
        value,
        model: entry.model.clone(),
        provider: entry.provider.clone(),
        route: p.route.name.clone(),
        attempts: Vec::new(),
        decision: p.decision,
        latency: Duration::ZERO,
        policies: p.applied.runs,
        headers: p.applied.headers,
        cache: Outcome::Hit,
        cost_picousd: 0,
    }
}

/// The cache's part in one request: its plan, its key, and (on a miss that will write) the
/// leadership of that key.
struct CacheStep {
    plan: Option<cache::Plan>,
    key: cache::Key,
    hit: Option<Arc<cache::Entry>>,
    leader: Option<Leader>,
    outcome: Outcome,
}

impl CacheStep {
    async fn begin(gw: &Gateway, p: &Planned<'_, '_>, target: &Target<'_>) -> CacheStep {
        let started = Instant::now();
        let exchange = crate::exchange::current();
        let ex = exchange.as_deref();
        let plan = cache::plan(
            gw.cache.config(),
            &p.request,
            target.cache.as_ref(),
            target.cache_control.as_deref(),
        );
        let mut step = CacheStep {
            plan,
            key: [0; 32],
            hit: None,
            leader: None,
            outcome: Outcome::Bypass,
        };
        match plan {
            None => gw.cache.bypassed(),
            Some(plan) => {
                step.key = cache::key(
                    ex.map_or("", Exchange::scope),
                    target.name.unwrap_or(DEFAULT_ROUTE),
                    target.models,
                    &p.request,
                );
                // Wait for an identical request in flight at most as long as this one may take.
                let wait = p.route.total;
                let lookup_started = Instant::now();
                match gw.cache.lookup(step.key, plan, wait).await {
                    Lookup::Hit(e) => {
                        step.hit = Some(e);
                        step.outcome = Outcome::Hit;
                    }
                    Lookup::Miss(leader) => {
                        step.leader = leader;
                        step.outcome = Outcome::Miss;
                    }
                }
                if let Some(ex) = ex {
                    // Waiting for the leader is upstream time, not the gateway's own.
                    let waited = lookup_started.elapsed();
                    let own = started.elapsed().saturating_sub(waited);
                    ex.stage(Stage::Cache, own + waited.min(Duration::from_micros(50)));
                }
            }
        }
        if let Some(ex) = ex {
            ex.set_cache(step.outcome);
        }
        step
    }

    fn ttl(&self) -> Duration {
        self.plan.map_or(Duration::ZERO, |p| p.ttl)
    }

    fn writes(&self) -> bool {
        self.plan.is_some_and(|p| p.write)
    }

    /// Store a complete answer (if this request may write), then release the waiters.
    fn store(&mut self, gw: &Gateway, ex: Option<&Exchange>, entry: impl FnOnce() -> cache::Entry) {
        if self.writes() {
            let started = Instant::now();
            gw.cache.insert(self.key, entry());
            if let Some(ex) = ex {
                ex.stage(Stage::Cache, started.elapsed());
            }
        }
        self.leader = None;
    }

    /// What a streamed answer needs to fill the cache when it ends cleanly.
    fn write_handle(&mut self, gw: &Gateway) -> Option<CacheWrite> {
        let leader = self.leader.take();
        if !self.writes() {
            return None;
        }
        Some(CacheWrite {
            cache: gw.cache.clone(),
            key: self.key,
            ttl: self.ttl(),
            _leader: leader,
        })
    }
}

/// Fills the cache at the end of a clean stream; holding it keeps identical requests waiting.
struct CacheWrite {
    cache: Arc<cache::ResponseCache>,
    key: cache::Key,
    ttl: Duration,
    _leader: Option<Leader>,
}

/// A cached answer as stream events: the text, the tool calls, the finish, the usage.
fn replay_events(r: &ChatResponse) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    let Some(choice) = r.choices.first() else {
        return out;
    };
    let text = choice.message.text();
    if !text.is_empty() {
        out.push(StreamEvent::Content(text.to_owned()));
    }
    for (i, call) in choice.message.tool_calls.iter().flatten().enumerate() {
        out.push(StreamEvent::ToolCall {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            id: Some(call.id.clone()),
            name: Some(call.function.name.clone()),
            arguments: call.function.arguments.clone(),
        });
    }
    out.push(StreamEvent::Finish(choice.finish_reason));
    out.push(StreamEvent::Usage(r.usage));
    out
}

/// Watches a streamed answer to its end: then settles the key's reservation with the cost of
/// the final usage (estimated from the text, and flagged, when the upstream sent none — also
/// for a stream cut or abandoned midway, since the provider bills what it generated), fills
/// the exchange, and stores a clean answer in the cache.
struct Tap {
    exchange: Option<Arc<Exchange>>,
    reservation: Option<Reservation>,
    entry: Option<CatalogEntry>,
    model: ModelId,
    provider: ProviderId,
    prompt_tokens: u32,
    acc: StreamAccumulator,
    store: Option<CacheWrite>,
    finished: bool,
    cut: Option<&'static str>,
}

impl Tap {
    fn wrap(mut self, primed: Primed) -> Primed {
        for e in &primed.head {
            self.acc.push(e.clone());
        }
        let tail = primed.tail;
        let tapped = futures::stream::unfold((tail, self), |(mut tail, mut tap)| async move {
            match tail.next().await {
                Some(Ok(event)) => {
                    tap.acc.push(event.clone());
                    Some((Ok(event), (tail, tap)))
                }
                Some(Err(e)) => {
                    tap.cut = Some("stream_cut");
                    tap.end();
                    Some((Err(e), (tail, tap)))
                }
                None => {
                    tap.end();
                    None
                }
            }
        });
        Primed {
            head: primed.head,
            tail: Box::pin(tapped.fuse()),
        }
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let clean = self.cut.is_none() && self.acc.finish.is_some();
        let (usage, estimated) = match &self.acc.usage {
            Some(u) => (*u, false),
            None => {
                let family = self
                    .entry
                    .as_ref()
                    .map_or(crate::catalog::TokenizerFamily::O200k, |e| e.tokenizer);
                let mut text = self.acc.text.clone();
                for c in &self.acc.tool_calls {
                    text.push_str(&c.function.name);
                    text.push_str(&c.function.arguments);
                }
                let out = crate::tokens::count_text(family, &text).tokens;
                (Usage::new(self.prompt_tokens, out), true)
            }
        };
        let cost = self.entry.as_ref().map_or(0, |e| e.usage_cost_pico(&usage));
        if let Some(r) = self.reservation.take() {
            r.settle(cost, u64::from(usage.total_tokens));
        }
        if let Some(ex) = &self.exchange {
            ex.answered(&usage, cost, estimated);
            if !clean {
                ex.set_error(Some(self.cut.unwrap_or("client_closed")));
            }
        }
        if let Some(w) = self.store.take()
            && clean
        {
            let acc = std::mem::take(&mut self.acc);
            let mut response = acc.into_response(new_id("chatcmpl-"), self.model.to_string());
            response.usage = usage;
            w.cache.insert(
                w.key,
                cache::Entry::new(response, self.model.clone(), self.provider.clone(), w.ttl),
            );
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropped before the end: the client went away (or the answer was cut by a deadline).
        if !self.finished {
            self.cut.get_or_insert("client_closed");
            self.end();
        }
    }
}

/// Reserve the key's budget and tokens for this request, or refuse it (402 / 429).
fn reserve(gw: &Gateway, p: &Planned<'_, '_>) -> Result<Option<Reservation>, ApiError> {
    let exchange = crate::exchange::current();
    let Some(key) = exchange.as_ref().and_then(|e| e.key.as_ref()) else {
        return Ok(None);
    };
    let (cost, tokens) = estimate(gw, &p.decision, &p.request);
    key.reserve(crate::keys::now_ms(), cost, tokens).map(Some)
}

/// The most this request may cost and use: over every eligible candidate (a fallback may land
/// on any), its prompt plus `max_tokens` (or the model's expected output when unset).
fn estimate(gw: &Gateway, decision: &Decision, request: &ChatRequest) -> (i64, u64) {
    let mut cost = 0;
    let mut tokens = 0;
    for c in decision.eligible() {
        let out = request
            .max_tokens
            .unwrap_or(c.expected_output_tokens.ceil() as u32);
        let usage = Usage::new(c.prompt_tokens, out);
        if let Some(e) = model_entry(gw, &c.model) {
            cost = cost.max(e.usage_cost_pico(&usage));
        }
        tokens = tokens.max(u64::from(usage.total_tokens));
    }
    (cost, tokens)
}

fn attempt_records(attempts: &[Attempt]) -> Vec<AttemptRecord> {
    attempts
        .iter()
        .map(|a| AttemptRecord {
            model: a.model.to_string(),
            provider: a.provider.to_string(),
            outcome: a.outcome.to_owned(),
            status: a.status,
            latency_ms: a.latency_ms,
            detail: a.detail.clone(),
        })
        .collect()
}

fn policy_records(runs: &[PolicyRun]) -> Vec<PolicyRecord> {
    runs.iter()
        .map(|r| PolicyRecord {
            policy: r.policy.clone(),
            outcome: r.outcome.to_owned(),
            annotations: r
                .annotations
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        })
        .collect()
}

fn routed<T>(
    s: Success<T>,
    route: String,
    decision: Decision,
    applied: Applied,
    cache: Outcome,
    cost_picousd: i64,
) -> Routed<T> {
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
        cache,
        cost_picousd,
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
fn failed(f: Failure, ex: Option<&Exchange>) -> ApiError {
    if let Some(ex) = ex
        && let Some(last) = f.attempts.last()
    {
        ex.routed(
            &last.model,
            &last.provider,
            attempt_records(&f.attempts),
            Vec::new(),
        );
    }
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
