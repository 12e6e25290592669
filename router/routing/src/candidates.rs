//! Candidates: start from the route's models (or the request's `models`), drop those that
//! cannot take the request — hard filters, each with its reason — and rank the rest by score.
//!
//! The result is a `Decision` that explains itself: every candidate's inputs and score terms,
//! what was filtered and why. It is computed from a snapshot of live health and never waits.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::time::Instant;

use super::health::{Health, HealthSnapshot};
use super::quality::{Basis, Lookup};
use super::score::{self, Inputs, Terms};
use crate::route::{ModelConfig, RouteConfig, Weights};
use crate::tokens;
use switchyard_types::ids::{ModelId, ProviderId};
use switchyard_types::{ChatRequest, Content, ContentPart, ResponseFormat};

/// Output tokens assumed for a model that has not answered yet (capped by `max_tokens`).
pub const DEFAULT_EXPECTED_OUTPUT: f64 = 256.0;
/// How much one request in flight slows the next, relative to its own latency. Local servers
/// are capacity-bound (a second request waits for the first); cloud APIs barely notice.
const LOCAL_LOAD_FACTOR: f64 = 1.0;
const CLOUD_LOAD_FACTOR: f64 = 0.05;

/// The request's own limits and weights (from `preferences`, else the route's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Preferences {
    pub weights: Weights,
    pub max_cost_usd: Option<f64>,
    pub max_latency_ms: Option<f64>,
    /// Leave the context-window filter to after the policies (which may trim the prompt).
    #[serde(skip)]
    pub defer_context: bool,
}

/// One model considered for a request.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub model: ModelId,
    pub provider: ProviderId,
    pub prompt_tokens: u32,
    pub prompt_tokens_exact: bool,
    pub expected_output_tokens: f64,
    /// Expected cost of one attempt, USD.
    pub cost_usd: f64,
    /// Expected latency of one attempt, ms (TTFT + output × TPOT, with load).
    pub latency_ms: f64,
    pub reliability: f64,
    pub in_flight: u32,
    /// Expected time for an attempt to fail, ms (the scorer's T_fail).
    pub time_to_fail_ms: f64,
    /// Estimated share of good answers, from feedback (`quality.rs`); the prior without any.
    pub quality: f64,
    /// Decayed feedback behind `quality`, and which cell it came from.
    pub quality_evidence: f64,
    pub quality_basis: Basis,
    /// Score terms; absent for filtered candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terms: Option<Terms>,
    /// Why this model cannot take the request; absent for eligible ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered: Option<Filtered>,
}

/// A hard filter a model failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filtered {
    pub reason: FilterReason,
    pub detail: String,
}

/// Which filter: the request's needs (capability, output cap, context, cost, latency) or the
/// model's state (health: breaker open, rate-limit cool-down, quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterReason {
    Tools,
    JsonSchema,
    JsonObject,
    Vision,
    Streaming,
    MaxTokens,
    Context,
    Health,
    Cost,
    Latency,
    /// A routing policy left the model out (`set-candidates`).
    Policy,
    /// A chat model asked for embeddings, or an embedding model asked for a chat.
    Operation,
    /// An embedding model that cannot output the request's vector length.
    Dimensions,
    /// The request carries content only its native format's models take (Anthropic blocks).
    Native,
}

impl FilterReason {
    /// The request parameter a client would change to get past this filter.
    pub fn param(self) -> &'static str {
        match self {
            FilterReason::Tools => "tools",
            FilterReason::JsonSchema | FilterReason::JsonObject => "response_format",
            FilterReason::Vision | FilterReason::Context => "messages",
            FilterReason::Streaming => "stream",
            FilterReason::MaxTokens => "max_tokens",
            FilterReason::Health => "model",
            FilterReason::Cost => "preferences.max_cost_usd",
            FilterReason::Latency => "preferences.max_latency_ms",
            FilterReason::Policy | FilterReason::Operation => "model",
            FilterReason::Dimensions => "dimensions",
            FilterReason::Native => "messages",
        }
    }
}

impl std::fmt::Display for Filtered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Candidate {
    pub fn score(&self) -> Option<f64> {
        self.terms.map(|t| t.score)
    }
}

/// The ranked candidates for one request: eligible ones best first, then the filtered ones.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub route: String,
    pub weights: Weights,
    pub candidates: Vec<Candidate>,
    #[serde(skip)]
    pub eligible: usize,
    /// The context-window filter was left to after the policies (see `Preferences`).
    #[serde(skip)]
    pub deferred_context: bool,
    /// Time spent counting the prompt's tokens.
    #[serde(skip)]
    pub count_time: std::time::Duration,
    /// The route's canary split, when it placed this request (`split::assign`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<crate::split::SplitChoice>,
}

impl Decision {
    pub fn eligible(&self) -> &[Candidate] {
        &self.candidates[..self.eligible]
    }

    pub fn chosen(&self) -> Option<&Candidate> {
        self.eligible().first()
    }

    /// One sentence on why the first candidate leads.
    pub fn reason(&self) -> String {
        if let Some(r) = self
            .split
            .as_ref()
            .and_then(|s| crate::split::reason(self, s))
        {
            return r;
        }
        let filtered = self.candidates.len() - self.eligible;
        let Some(best) = self.chosen() else {
            return format!("no eligible model: all {filtered} candidates were filtered");
        };
        let mut out = match best.terms {
            Some(t) if self.eligible > 1 => format!(
                "{} has the lowest score ({:.3}) of {} eligible under weights cost {}, latency {}, \
                 reliability {}: expected ${:.6} and {:.0} ms to a successful answer, \
                 reliability {:.3}",
                best.model,
                t.score,
                self.eligible,
                self.weights.cost,
                self.weights.latency,
                self.weights.reliability,
                t.expected_cost_usd,
                t.expected_latency_ms,
                best.reliability
            ),
            _ => format!("{} is the only eligible model", best.model),
        };
        // Quality is mentioned only when it counts, so explanations without it read as before.
        let quality = self.weights.quality > 0.0;
        if quality && self.eligible > 1 {
            out.push_str(&format!(
                ", quality {:.3} ({:?} estimate from {:.1} feedback; weight {})",
                best.quality, best.quality_basis, best.quality_evidence, self.weights.quality
            ));
        }
        if let Some(next) = self.eligible().get(1)
            && let (Some(a), Some(b)) = (best.terms, next.terms)
        {
            let (dc, dl, dr) = (
                b.cost - a.cost,
                b.latency - a.latency,
                b.reliability - a.reliability,
            );
            out.push_str(&format!(
                "; runner-up {} ({:.3}: cost {dc:+.3}, latency {dl:+.3}, reliability {dr:+.3}",
                next.model, b.score
            ));
            if quality {
                out.push_str(&format!(", quality {:+.3}", b.quality - a.quality));
            }
            out.push(')');
        }
        if filtered > 0 {
            out.push_str(&format!("; {filtered} filtered"));
        }
        out
    }
}

/// Rank the route's models for `request`.
#[expect(
    clippy::too_many_arguments,
    reason = "each input is a different piece of live state or of the request; a struct of them would be built at one call site only"
)]
pub fn decide<'q>(
    configured: &BTreeMap<ModelId, ModelConfig>,
    health: &Health,
    quality: impl Into<Lookup<'q>>,
    route: &RouteConfig,
    models: &[ModelId],
    request: &ChatRequest,
    prefs: &Preferences,
    now: Instant,
) -> Decision {
    let quality = quality.into();
    let mut needs = Needs::of(request);
    needs.dimensions = request.embed.map(|e| {
        // Vectors of different lengths are not interchangeable: the request's length, or the
        // length of the first embedding model the route lists.
        e.dimensions.unwrap_or_else(|| {
            models
                .iter()
                .filter_map(|id| configured.get(id))
                .find_map(|m| dims(&m.entry).first().copied())
                .unwrap_or(0)
        })
    });
    // One tokenizer pass per encoding, shared by every candidate of that family.
    let counter = tokens::RequestTokens::new(request);
    let mut eligible = Vec::new();
    let mut filtered = Vec::new();
    for id in models {
        let Some(model) = configured.get(id) else {
            continue;
        };
        let snapshot = health.get(id.as_str()).map(|h| h.snapshot(now));
        let count = counter.get(model.entry.tokenizer);
        let mut c = estimate(model, snapshot.as_ref(), request, count);
        let q = quality
            .quality
            .estimate(id.as_str(), &route.name, quality.task, now);
        (c.quality, c.quality_evidence, c.quality_basis) = (q.mean, q.evidence, q.basis);
        c.filtered = hard_filter(model, snapshot.as_ref(), &needs, request, prefs, &c);
        if c.filtered.is_some() {
            filtered.push(c);
        } else {
            eligible.push(c);
        }
    }
    let inputs: Vec<Inputs> = eligible
        .iter()
        .map(|c| Inputs {
            cost_usd: c.cost_usd,
            latency_ms: c.latency_ms,
            reliability: c.reliability,
            time_to_fail_ms: c.time_to_fail_ms,
            quality: c.quality,
        })
        .collect();
    let terms = score::score(&inputs, prefs.weights);
    for (c, t) in eligible.iter_mut().zip(terms) {
        c.terms = Some(t);
    }
    let order = score::rank(&eligible.iter().filter_map(|c| c.terms).collect::<Vec<_>>());
    let mut slots: Vec<Option<Candidate>> = eligible.into_iter().map(Some).collect();
    let mut ranked: Vec<Candidate> = order.into_iter().filter_map(|i| slots[i].take()).collect();
    let count = ranked.len();
    ranked.extend(filtered);
    Decision {
        route: route.name.clone(),
        weights: prefs.weights,
        candidates: ranked,
        eligible: count,
        deferred_context: prefs.defer_context,
        count_time: counter.time_spent(),
        split: None,
    }
}

/// Cost and latency estimates for one model, before filtering.
fn estimate(
    model: &ModelConfig,
    health: Option<&HealthSnapshot>,
    request: &ChatRequest,
    count: tokens::TokenCount,
) -> Candidate {
    let cap = f64::from(request.max_tokens.unwrap_or(model.entry.max_output));
    let observed = health.map_or(0.0, |h| h.output_tokens_ewma);
    let expected_out = if observed > 0.0 {
        observed
    } else {
        DEFAULT_EXPECTED_OUTPUT
    }
    .min(cap);
    let (ttft, tpot, in_flight, reliability) = match health {
        Some(h) => (h.ttft_ms, h.tpot_ms, h.in_flight, h.reliability),
        None => (1000.0, 20.0, 0, 0.9),
    };
    let factor = if model.entry.is_local() {
        LOCAL_LOAD_FACTOR
    } else {
        CLOUD_LOAD_FACTOR
    };
    let latency = (ttft + expected_out * tpot) * (1.0 + factor * f64::from(in_flight));
    Candidate {
        model: model.id.clone(),
        provider: model.provider.clone(),
        prompt_tokens: count.tokens,
        prompt_tokens_exact: count.exact,
        expected_output_tokens: expected_out,
        cost_usd: score::attempt_cost(&model.entry, count.tokens, expected_out),
        latency_ms: latency,
        reliability,
        in_flight,
        time_to_fail_ms: health.map_or(ttft, |h| h.time_to_fail_ms),
        quality: 0.5,
        quality_evidence: 0.0,
        quality_basis: Basis::Prior,
        terms: None,
        filtered: None,
    }
}

/// What a request needs from a model.
struct Needs {
    tools: bool,
    json_object: bool,
    json_schema: bool,
    vision: bool,
    streaming: bool,
    /// Embeddings of this length (`None`: a chat).
    dimensions: Option<u32>,
    /// Only models of the native body's format: (parameter, what).
    only_native: Option<(String, String)>,
}

impl Needs {
    fn of(r: &ChatRequest) -> Needs {
        let vision = r.messages.iter().any(|m| match &m.content {
            Some(Content::Parts(parts)) => parts
                .iter()
                .any(|p| matches!(p, ContentPart::ImageUrl { .. })),
            _ => false,
        });
        Needs {
            tools: r.has_tools(),
            json_object: matches!(r.response_format, Some(ResponseFormat::JsonObject)),
            json_schema: matches!(r.response_format, Some(ResponseFormat::JsonSchema { .. })),
            vision,
            streaming: r.stream,
            dimensions: None,
            only_native: r.native.as_ref().and_then(|n| n.only_native.clone()),
        }
    }
}

/// The vector lengths an embedding model outputs (none: a chat model).
fn dims(e: &crate::catalog::CatalogEntry) -> &[u32] {
    &e.dimensions
}

fn join_dims(dims: &[u32]) -> String {
    let all: Vec<String> = dims.iter().map(u32::to_string).collect();
    all.join(" or ")
}

/// The context-window filter: `prompt + max_tokens` (1 when unset) must fit the model's window.
pub fn context_filter(
    model: &ModelConfig,
    prompt_tokens: u32,
    exact: bool,
    request: &ChatRequest,
) -> Option<Filtered> {
    let window = model.entry.context_window;
    let reserve = request.max_tokens.unwrap_or(1);
    if u64::from(prompt_tokens) + u64::from(reserve) <= u64::from(window) {
        return None;
    }
    Some(Filtered {
        reason: FilterReason::Context,
        detail: format!(
            "{prompt_tokens} prompt tokens{} + {reserve} output exceed model '{}''s context window of {window}",
            if exact { "" } else { " (estimated)" },
            model.id
        ),
    })
}

/// The first hard filter a model fails, as a reason; `None` = eligible.
fn hard_filter(
    model: &ModelConfig,
    health: Option<&HealthSnapshot>,
    needs: &Needs,
    request: &ChatRequest,
    prefs: &Preferences,
    c: &Candidate,
) -> Option<Filtered> {
    let out = |reason, detail: String| Some(Filtered { reason, detail });
    match (needs.dimensions, !dims(&model.entry).is_empty()) {
        (None, true) => {
            return out(
                FilterReason::Operation,
                format!(
                    "model '{}' is an embedding model; it does not chat",
                    model.id
                ),
            );
        }
        (Some(_), false) => {
            return out(
                FilterReason::Operation,
                format!(
                    "model '{}' is a chat model; it does not make embeddings",
                    model.id
                ),
            );
        }
        (Some(want), true) if !dims(&model.entry).contains(&want) => {
            return out(
                FilterReason::Dimensions,
                format!(
                    "model '{}' outputs vectors of {} values, not {want}",
                    model.id,
                    join_dims(dims(&model.entry))
                ),
            );
        }
        _ => {}
    }
    if let Some((param, what)) = &needs.only_native
        && model.entry.kind != crate::catalog::ModelKind::Anthropic
    {
        return out(
            FilterReason::Native,
            format!(
                "the request carries {what} ({param}), which only Anthropic models take; \
                 model '{}' is not one",
                model.id
            ),
        );
    }
    let caps = model.entry.capabilities;
    let lacking = [
        (needs.tools && !caps.tools, FilterReason::Tools, "tools"),
        (
            needs.json_schema && !caps.json_schema,
            FilterReason::JsonSchema,
            "JSON schema output",
        ),
        (
            needs.json_object && !caps.json_object,
            FilterReason::JsonObject,
            "JSON mode",
        ),
        (
            needs.vision && !caps.vision,
            FilterReason::Vision,
            "image input",
        ),
        (
            needs.streaming && !caps.streaming,
            FilterReason::Streaming,
            "streaming",
        ),
    ];
    if let Some((_, reason, what)) = lacking.iter().find(|(lacks, _, _)| *lacks) {
        return out(
            *reason,
            format!("model '{}' does not support {what}", model.id),
        );
    }
    if let Some(max) = request.max_tokens
        && max > model.entry.max_output
    {
        return out(
            FilterReason::MaxTokens,
            format!(
                "{max} exceeds model '{}''s maximum output of {} tokens",
                model.id, model.entry.max_output
            ),
        );
    }
    // An embedding model's window is per input, and the count is of them all: the upstream
    // judges each input's length.
    if !prefs.defer_context
        && needs.dimensions.is_none()
        && let Some(f) = context_filter(model, c.prompt_tokens, c.prompt_tokens_exact, request)
    {
        return Some(f);
    }
    if let Some(unavailable) = health.and_then(|h| h.available) {
        return out(FilterReason::Health, unavailable.describe());
    }
    if let Some(max) = prefs.max_cost_usd {
        // Worst case when the output is capped, expected otherwise.
        let output = request
            .max_tokens
            .map_or(c.expected_output_tokens, f64::from);
        let cost = score::attempt_cost(&model.entry, c.prompt_tokens, output);
        if cost > max {
            return out(
                FilterReason::Cost,
                format!("expected ${cost:.6} is over max_cost_usd ${max}"),
            );
        }
    }
    if let Some(max) = prefs.max_latency_ms
        && c.latency_ms > max
    {
        return out(
            FilterReason::Latency,
            format!(
                "expected {:.0} ms is over max_latency_ms {max}",
                c.latency_ms
            ),
        );
    }
    None
}
