//! policy/: the adapter between the pipeline and `plugins/host` (crate `switchyard-plugins`).
//!
//! After scoring, every policy configured for the route runs in order (manifest `order`), each
//! seeing the request as the policies before it left it. A policy's edits are validated by the
//! host, then applied here to the hub request and to the candidate list; when the policies are
//! done, every candidate's context fit is checked again on the edited prompt. A policy that fails
//! is skipped (`failure_mode = "open"`, noted in the explanation) or refuses the request with 503
//! (`"closed"`: a redaction that did not run must not be bypassed); so does a policy whose module
//! failed to load. A request over any of the route's policies' input limits is refused with 413
//! before the first runs: the caller's error, not the policy's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use switchyard_plugins::{
    Decision as PolicyDecision, Edit, EngineOptions, FailureMode, InputCandidate, InputMessage,
    NewMessage, PolicyEngine, PolicyInput, PolicySet, Registry, Role as PolicyRole, TokenCounter,
};

use crate::config::{Config, RouteConfig};
use crate::error::Error;
use switchyard_routing::candidates::{self, Decision, FilterReason, Filtered};
use switchyard_routing::catalog::TokenizerFamily;
use switchyard_routing::tokens;
use switchyard_types::{ChatRequest, Content, ContentPart, Message, Role};

pub mod cli;

/// How often the policy folder is polled, and how long a change must be quiet before a reload.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
const WATCH_DEBOUNCE: Duration = Duration::from_millis(250);
/// Request headers a policy may see (lower-case names).
pub fn visible_header(name: &str) -> bool {
    name.starts_with("x-switchyard-") || name == "x-request-id" || name == "user-agent"
}

/// Builds the engine and the registry for `[policies]`, loads the folder once and starts the
/// watcher. `None` when no folder is configured. A policy that fails to load is reported (log and
/// `/ai/policies`) and does not stop the gateway.
pub fn start(config: &Config) -> Result<Option<Arc<Registry>>, String> {
    let Some(dir) = config.policies.dir.clone() else {
        return Ok(None);
    };
    let cache_dir = config
        .policies
        .cache_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".switchyard/cwasm"));
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "policy folder does not exist; running without policies");
        return Ok(None);
    }
    let engine = PolicyEngine::new(EngineOptions {
        fuel: false,
        cache_dir: Some(cache_dir),
        slots: config.policies.slots,
    })
    .map_err(|e| format!("policies: {e}"))?;
    let registry = Arc::new(Registry::new(
        engine,
        Some(dir),
        Arc::new(CatalogCounter::new(config)),
    ));
    let report = registry.reload();
    for f in &report.failed {
        tracing::error!(path = %f.path, error = %f.error, "policy not loaded");
    }
    tracing::info!(loaded = ?report.loaded, failed = report.failed.len(), "policies");
    if config.policies.watch {
        registry.watch(WATCH_INTERVAL, WATCH_DEBOUNCE);
    }
    Ok(Some(registry))
}

/// Counts with each model's own tokenizer family (the router's tiktoken tables and margins).
pub struct CatalogCounter {
    families: HashMap<String, TokenizerFamily>,
}

impl CatalogCounter {
    /// The configured models (by their configured names) and every catalog entry.
    pub fn new(config: &Config) -> Self {
        let mut c = CatalogCounter::of_catalog(&config.catalog);
        c.families.extend(
            config
                .models
                .iter()
                .map(|(id, m)| (id.to_string(), m.entry.tokenizer)),
        );
        c
    }

    pub fn of_catalog(catalog: &switchyard_routing::catalog::Catalog) -> Self {
        CatalogCounter {
            families: catalog
                .iter()
                .map(|(name, e)| (name.clone(), e.tokenizer))
                .collect(),
        }
    }
}

impl TokenCounter for CatalogCounter {
    fn count(&self, model: &str, text: &str) -> u32 {
        let family = self
            .families
            .get(model)
            .copied()
            .unwrap_or(TokenizerFamily::O200k);
        tokens::count_text(family, text).tokens
    }
}

/// What one policy did to one request, for logs and the `/ai/route` explanation.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    pub policy: String,
    /// `applied`, `bypassed` (failed, fails open), `denied`, `failed` (failed, fails closed).
    pub outcome: &'static str,
    pub edits: usize,
    pub elapsed_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<(String, String)>,
}

/// The policies' effect on a request.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub runs: Vec<PolicyRun>,
    /// Headers the policies asked to add to the answer.
    pub headers: Vec<(String, String)>,
}

/// Who is asking, for the policy context.
#[derive(Debug, Clone, Default)]
pub struct Caller<'a> {
    pub request_id: &'a str,
    pub tenant: &'a str,
    pub headers: &'a [(String, String)],
    /// The request's own cost cap (`preferences.max_cost_usd`), over the route's.
    pub max_cost_usd: Option<f64>,
}

/// Whether any policy will run on `route` (then the context filter waits until after them), or
/// one should but is not loaded (then [`apply`] must see the request, to refuse it or say so).
pub fn active_for(registry: Option<&Arc<Registry>>, route: &str) -> bool {
    registry.is_some_and(|r| {
        let set = r.current();
        set.for_route(route).next().is_some() || set.unloaded_for(route).next().is_some()
    })
}

/// Before any policy runs: a fail-closed policy of the route that is not loaded refuses the
/// request (503); a fail-open one is noted as bypassed. Never silently absent.
fn check_unloaded(set: &PolicySet, route: &str, applied: &mut Applied) -> Result<(), Error> {
    for u in set.unloaded_for(route) {
        // Logged at load (registry); per request only at debug.
        tracing::debug!(policy = %u.name, error = %u.error, failure_mode = u.failure_mode.as_str(), "policy not loaded");
        // The load error (paths, compiler output) stays in the log and /ai/policies.
        let detail = "it is not loaded: its folder failed to load (see /ai/policies)";
        if u.failure_mode == FailureMode::Closed {
            return Err(Error::policy_failed(&u.name, detail));
        }
        applied.runs.push(PolicyRun {
            policy: u.name.clone(),
            outcome: "bypassed",
            edits: 0,
            elapsed_us: 0,
            error: Some(detail.to_owned()),
            annotations: Vec::new(),
        });
    }
    Ok(())
}

/// Runs the route's policies over `request` and `decision`, in place.
pub fn apply(
    registry: &Registry,
    config: &Config,
    route: &RouteConfig,
    request: &mut Cow<'_, ChatRequest>,
    decision: &mut Decision,
    caller: &Caller<'_>,
) -> Result<Applied, Error> {
    let set = registry.current();
    let mut applied = Applied::default();
    check_unloaded(&set, &route.name, &mut applied)?;
    let mut input: Option<PolicyInput> = None;
    if set.for_route(&route.name).next().is_some() {
        let first = build_input(config, route, request, decision, caller);
        // Every policy's input limits, before the first runs: an oversized request is the
        // caller's error (413) and must cost no policy its health.
        for policy in set.for_route(&route.name) {
            if let Err(over) = policy.check_input(&first) {
                policy.stats.record_input_refused();
                tracing::info!(policy = %policy.manifest.id(), limit = over.limit, actual = over.actual, "request over a policy's input limit");
                return Err(Error::policy_input_too_large(
                    &policy.manifest.id(),
                    &over.to_string(),
                ));
            }
        }
        input = Some(first);
    }
    let mut prompt_changed = false;
    for policy in set.for_route(&route.name) {
        let id = policy.manifest.id();
        let ctx = match &mut input {
            Some(i) => i,
            None => input.insert(build_input(config, route, request, decision, caller)),
        };
        let out = policy.run(ctx);
        let mut run = PolicyRun {
            policy: id.clone(),
            outcome: "applied",
            edits: 0,
            elapsed_us: 0,
            error: None,
            annotations: Vec::new(),
        };
        match out {
            Err(e) => {
                tracing::warn!(policy = %id, error = %e, kind = e.kind(), "policy failed");
                run.error = Some(e.to_string());
                if policy.manifest.failure_mode == FailureMode::Closed {
                    run.outcome = "failed";
                    applied.runs.push(run);
                    return Err(Error::policy_failed(&id, &e.to_string()));
                }
                run.outcome = "bypassed";
            }
            Ok(ev) => {
                run.elapsed_us = u64::try_from(ev.elapsed.as_micros()).unwrap_or(u64::MAX);
                match ev.decision {
                    PolicyDecision::Deny(d) => {
                        tracing::info!(policy = %id, status = d.status, code = %d.code, reason = %d.reason, "policy denied the request");
                        return Err(Error::policy_denied(d.status, &id, &d.code, &d.reason));
                    }
                    PolicyDecision::Allow(edits) => {
                        run.edits = edits.len();
                        match apply_edits(
                            config,
                            request,
                            decision,
                            ctx,
                            &edits,
                            &mut run,
                            &mut applied,
                        ) {
                            Ok(changed) => prompt_changed |= changed,
                            Err(msg) => {
                                // The host validated indices; what is left is the request's own
                                // consistency (tool results without their call, ...).
                                tracing::warn!(policy = %id, error = %msg, "policy edits rejected");
                                if policy.manifest.failure_mode == FailureMode::Closed {
                                    return Err(Error::policy_failed(&id, &msg));
                                }
                                run.outcome = "bypassed";
                                run.error = Some(msg);
                                // Start the next policy from the last consistent state.
                                input = None;
                            }
                        }
                    }
                }
            }
        }
        for (k, v) in &run.annotations {
            tracing::debug!(policy = %id, key = %k, value = %v, "policy annotation");
        }
        applied.runs.push(run);
    }
    refit(config, request, decision, prompt_changed);
    Ok(applied)
}

fn apply_edits(
    config: &Config,
    request: &mut Cow<'_, ChatRequest>,
    decision: &mut Decision,
    ctx: &mut PolicyInput,
    edits: &[Edit],
    run: &mut PolicyRun,
    applied: &mut Applied,
) -> Result<bool, String> {
    let touches_messages = edits.iter().any(|e| {
        matches!(
            e,
            Edit::DropMessage(_) | Edit::ReplaceMessage(..) | Edit::InsertMessage(..)
        )
    });
    if touches_messages {
        // A native body (`/v1/messages`) is sent as the client wrote it: after an edit, the hub
        // request is the truth and the upstream gets its translation. Content only the native
        // format can carry cannot be translated, so such a request cannot be edited.
        if let Some(native) = &request.native {
            if let Some((param, what)) = &native.only_native {
                return Err(format!(
                    "the policy edited the messages of a request that carries {what} \
                     ({param}), which cannot be re-sent after an edit"
                ));
            }
            request.to_mut().native = None;
        }
        let messages = std::mem::take(&mut request.to_mut().messages);
        let before = messages.clone();
        let edited =
            switchyard_plugins::apply_message_edits(messages, edits, new_message, replace_text);
        if let Err(e) = check_tool_pairs(&edited) {
            request.to_mut().messages = before;
            return Err(e);
        }
        request.to_mut().messages = edited;
        // The same edits on the policies' view; only new and replaced messages are counted again.
        let family = first_family(config, decision);
        let stale = |_: &NewMessage| InputMessage {
            role: PolicyRole::User,
            content: String::new(),
            tokens: None,
            tool_related: false,
        };
        ctx.messages = switchyard_plugins::apply_message_edits(
            std::mem::take(&mut ctx.messages),
            edits,
            stale,
            |m, _| m.tokens = None,
        );
        for (view, m) in ctx.messages.iter_mut().zip(&request.messages) {
            if view.tokens.is_none() {
                *view = input_message(m, family);
            }
        }
        let sum: u32 = ctx.messages.iter().filter_map(|m| m.tokens).sum();
        for c in &mut ctx.candidates {
            c.prompt_tokens = Some(sum);
        }
    }
    for e in edits {
        match e {
            Edit::SetMaxTokens(t) => {
                let r = request.to_mut();
                r.max_tokens = Some(r.max_tokens.map_or(*t, |cur| cur.min(*t)));
                ctx.max_tokens = r.max_tokens;
            }
            Edit::SetCandidates(order) => {
                reorder(decision, order, &run.policy);
                let old = std::mem::take(&mut ctx.candidates);
                ctx.candidates = order
                    .iter()
                    .filter_map(|i| old.get(*i as usize).cloned())
                    .collect();
            }
            Edit::SetHeader(k, v) => applied.headers.push((k.clone(), v.clone())),
            Edit::Annotate(k, v) => run.annotations.push((k.clone(), v.clone())),
            _ => {}
        }
    }
    Ok(touches_messages)
}

/// The tokenizer family of the leading candidate: the one message token counts are given in.
fn first_family(config: &Config, decision: &Decision) -> TokenizerFamily {
    decision
        .eligible()
        .first()
        .and_then(|c| config.models.get(&c.model))
        .map_or(TokenizerFamily::O200k, |m| m.entry.tokenizer)
}

/// Puts the eligible candidates in the policy's order; those it left out become filtered.
fn reorder(decision: &mut Decision, order: &[u32], policy: &str) {
    let eligible: Vec<_> = decision.candidates.drain(..decision.eligible).collect();
    let mut slots: Vec<Option<_>> = eligible.into_iter().map(Some).collect();
    let mut kept: Vec<_> = order
        .iter()
        .filter_map(|i| slots.get_mut(*i as usize).and_then(Option::take))
        .collect();
    let count = kept.len();
    for mut c in slots.into_iter().flatten() {
        c.filtered = Some(Filtered {
            reason: FilterReason::Policy,
            detail: format!("vetoed by policy {policy}"),
        });
        c.terms = None;
        kept.push(c);
    }
    kept.append(&mut decision.candidates);
    decision.candidates = kept;
    decision.eligible = count;
}

/// After the policies: drop eligible candidates the prompt does not fit (the context filter waits
/// for the policies when any will run). The prompt is counted again only if a policy changed it.
pub fn refit(config: &Config, request: &ChatRequest, decision: &mut Decision, recount: bool) {
    let counts = recount.then(|| tokens::RequestTokens::new(request));
    let mut kept = Vec::with_capacity(decision.candidates.len());
    let mut dropped = Vec::new();
    for (i, mut c) in std::mem::take(&mut decision.candidates)
        .into_iter()
        .enumerate()
    {
        if i >= decision.eligible {
            dropped.push(c);
            continue;
        }
        let Some(model) = config.models.get(&c.model) else {
            kept.push(c);
            continue;
        };
        if let Some(counts) = &counts {
            let count = counts.get(model.entry.tokenizer);
            c.prompt_tokens = count.tokens;
            c.prompt_tokens_exact = count.exact;
        }
        match candidates::context_filter(model, c.prompt_tokens, c.prompt_tokens_exact, request) {
            Some(mut f) => {
                f.detail.push_str(" (after policies)");
                c.filtered = Some(f);
                c.terms = None;
                dropped.push(c);
            }
            None => kept.push(c),
        }
    }
    decision.eligible = kept.len();
    kept.extend(dropped);
    decision.candidates = kept;
}

fn build_input(
    config: &Config,
    route: &RouteConfig,
    request: &ChatRequest,
    decision: &Decision,
    caller: &Caller<'_>,
) -> PolicyInput {
    let family = first_family(config, decision);
    let candidates = decision
        .eligible()
        .iter()
        .filter_map(|c| {
            let m = config.models.get(&c.model)?;
            Some(InputCandidate {
                model: c.model.to_string(),
                provider: c.provider.to_string(),
                context_window: m.entry.context_window,
                max_output_tokens: m.entry.max_output,
                input_price: micros(m.entry.input),
                output_price: micros(m.entry.output),
                score: c.score().unwrap_or(0.0),
                local: m.entry.is_local(),
                prompt_tokens: Some(c.prompt_tokens),
                estimated_cost: micros(c.cost_usd),
            })
        })
        .collect();
    PolicyInput {
        request_id: caller.request_id.to_owned(),
        tenant: caller.tenant.to_owned(),
        route: route.name.clone(),
        messages: request
            .messages
            .iter()
            .map(|m| input_message(m, family))
            .collect(),
        max_tokens: request.max_tokens,
        candidates,
        token_budget: route.token_budget,
        cost_budget: caller.max_cost_usd.or(route.cost_budget_usd).map(micros),
        headers: caller.headers.to_vec(),
        config: Default::default(),
    }
}

/// Dollars (or dollars per million tokens) to integer micro-dollars, rounding up.
fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).ceil() as u64
    } else {
        0
    }
}

/// Per-message framing in the OpenAI cookbook count.
const MESSAGE_OVERHEAD: u32 = 3;

fn input_message(m: &Message, family: TokenizerFamily) -> InputMessage {
    let content = m.content.as_ref().map(Content::text).unwrap_or_default();
    let mut tokens = tokens::count_text(family, &content).tokens + MESSAGE_OVERHEAD;
    for call in m.tool_calls() {
        tokens += tokens::count_text(family, &call.function.name).tokens
            + tokens::count_text(family, &call.function.arguments).tokens;
    }
    InputMessage {
        role: match m.role {
            Role::System | Role::Developer => PolicyRole::System,
            Role::User => PolicyRole::User,
            Role::Assistant => PolicyRole::Assistant,
            Role::Tool => PolicyRole::Tool,
        },
        content,
        tokens: Some(tokens),
        tool_related: m.role == Role::Tool || !m.tool_calls().is_empty(),
    }
}

fn new_message(nm: &NewMessage) -> Message {
    let role = match nm.role {
        PolicyRole::System => Role::System,
        PolicyRole::User => Role::User,
        PolicyRole::Assistant => Role::Assistant,
        // A tool result needs a call to answer; a policy cannot make one up.
        PolicyRole::Tool => Role::User,
    };
    Message::new(role, nm.content.clone())
}

/// Replaces the text, keeping role, name, tool calls and any non-text parts.
fn replace_text(m: &mut Message, nm: &NewMessage) {
    m.content = Some(match m.content.take() {
        Some(Content::Parts(parts)) => {
            let mut out = vec![ContentPart::Text {
                text: nm.content.clone(),
            }];
            out.extend(
                parts
                    .into_iter()
                    .filter(|p| !matches!(p, ContentPart::Text { .. })),
            );
            Content::Parts(out)
        }
        _ => Content::Text(nm.content.clone()),
    });
}

/// Every tool result must answer a call made earlier in the conversation, and the conversation
/// must not be empty.
fn check_tool_pairs(messages: &[Message]) -> Result<(), String> {
    if messages.is_empty() {
        return Err("the edits leave no messages".to_owned());
    }
    let mut calls: Vec<&str> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        calls.extend(m.tool_calls().iter().map(|c| c.id.as_str()));
        if m.role == Role::Tool {
            let id = m.tool_call_id.as_deref().unwrap_or("");
            if !calls.contains(&id) {
                return Err(format!(
                    "after the edits, messages[{i}] answers tool call '{id}', which is no longer in the conversation"
                ));
            }
        }
    }
    Ok(())
}
