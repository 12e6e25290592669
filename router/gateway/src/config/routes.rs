//! `[routes.NAME]` as written, and its validation into `switchyard_routing::route::RouteConfig`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use switchyard_routing::route::{
    DEFAULT_ATTEMPT_MS, DEFAULT_HEDGE_SHARE, DEFAULT_MAX_ATTEMPTS, DEFAULT_ROUTE, DEFAULT_TOTAL_MS,
    DEFAULT_TTFT_MS, Hedge, HedgeAfter, ModelConfig, Optimize, RetryPolicy, RouteConfig, Weights,
};
use switchyard_types::ids::ModelId;

mod traffic;

/// `[routes.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub models: Vec<String>,
    pub optimize: Option<Optimize>,
    pub weights: Option<Weights>,
    pub max_attempts: Option<u32>,
    pub ttft_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub attempt_ms: Option<u64>,
    pub total_ms: Option<u64>,
    pub retry: Option<RetryPolicy>,
    pub token_budget: Option<u32>,
    pub cost_budget_usd: Option<f64>,
    pub hedge: Option<RawHedge>,
    pub split: Option<BTreeMap<String, f64>>,
    pub split_by: Option<String>,
    pub shadow: Option<traffic::RawShadow>,
}

/// `hedge = { … }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHedge {
    /// A fixed wait.
    pub after_ms: Option<u64>,
    /// `"p50"` … `"p99"`: the first model's live quantile.
    pub after: Option<String>,
    /// With `after`: the wait before the model has enough history (default: the route's
    /// `ttft_ms` / 10 for streams, the same for complete answers), and the shortest wait.
    pub fallback_ms: Option<u64>,
    pub min_ms: Option<u64>,
    pub max_share: Option<f64>,
}

/// Validate `hedge`; errors as `(path, message)`.
fn resolve_hedge(
    raw: &RawHedge,
    path: &str,
    ttft_ms: u64,
    errors: &mut Vec<(String, String)>,
) -> Option<Hedge> {
    let max_share = raw.max_share.unwrap_or(DEFAULT_HEDGE_SHARE);
    if !(max_share.is_finite() && max_share > 0.0 && max_share <= 1.0) {
        errors.push((format!("{path}.max_share"), "must be within (0, 1]".into()));
    }
    let positive = |v: Option<u64>, name: &str, errors: &mut Vec<(String, String)>| {
        if v == Some(0) {
            errors.push((format!("{path}.{name}"), "must be positive".into()));
        }
    };
    positive(raw.after_ms, "after_ms", errors);
    positive(raw.fallback_ms, "fallback_ms", errors);
    let after = match (raw.after_ms, raw.after.as_deref()) {
        (Some(ms), None) => {
            if raw.fallback_ms.is_some() || raw.min_ms.is_some() {
                errors.push((
                    path.to_owned(),
                    "fallback_ms and min_ms go with `after = \"pNN\"`, not with after_ms".into(),
                ));
            }
            HedgeAfter::Fixed(Duration::from_millis(ms))
        }
        (None, Some(text)) => {
            let q = text
                .strip_prefix('p')
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| (50..=99).contains(n));
            let Some(q) = q else {
                errors.push((
                    format!("{path}.after"),
                    format!("'{text}' is not a percentile from \"p50\" to \"p99\""),
                ));
                return None;
            };
            let fallback = raw.fallback_ms.unwrap_or((ttft_ms / 10).max(1));
            HedgeAfter::Quantile {
                q: f64::from(q) / 100.0,
                fallback: Duration::from_millis(fallback),
                floor: Duration::from_millis(raw.min_ms.unwrap_or(1)),
            }
        }
        _ => {
            errors.push((
                path.to_owned(),
                "set exactly one of after_ms (a fixed wait) and after (\"p90\": the model's live percentile)".into(),
            ));
            return None;
        }
    };
    Some(Hedge { after, max_share })
}

/// Validate raw routes against the configured models; errors as `(path, message)`.
pub(super) fn resolve(
    raw: BTreeMap<String, RawRoute>,
    models: &BTreeMap<ModelId, ModelConfig>,
    errors: &mut Vec<(String, String)>,
) -> BTreeMap<String, RouteConfig> {
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let path = format!("routes.{}", super::quote_key(&name));
        let before = errors.len();
        if models.contains_key(name.as_str()) {
            errors.push((
                path.clone(),
                format!("'{name}' is also a model name; a route must have its own name"),
            ));
        }
        if r.models.is_empty() {
            errors.push((
                format!("{path}.models"),
                "must name at least one model".into(),
            ));
        }
        let mut ids = Vec::new();
        for (i, m) in r.models.iter().enumerate() {
            if !models.contains_key(m.as_str()) {
                errors.push((
                    format!("{path}.models[{i}]"),
                    format!("no model named '{m}'"),
                ));
            } else if ids.iter().any(|id: &ModelId| id.as_str() == m) {
                errors.push((
                    format!("{path}.models[{i}]"),
                    format!("'{m}' is listed twice"),
                ));
            } else {
                ids.push(ModelId::new(m));
            }
        }
        let weights = match (r.optimize, r.weights) {
            (Some(_), Some(_)) => {
                errors.push((path.clone(), "set `optimize` or `weights`, not both".into()));
                Optimize::Balanced.weights()
            }
            (_, Some(w)) => {
                if let Err(e) = w.validate() {
                    errors.push((format!("{path}.weights"), e));
                }
                w
            }
            (o, None) => o.unwrap_or_default().weights(),
        };
        let max_attempts = r.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 || max_attempts > 20 {
            errors.push((
                format!("{path}.max_attempts"),
                "must be between 1 and 20".into(),
            ));
        }
        let ttft_ms = r.ttft_ms.unwrap_or(DEFAULT_TTFT_MS);
        // Between chunks, as patient as for the first one unless told otherwise.
        let idle_ms = r.idle_ms.unwrap_or(ttft_ms);
        let total_ms = r.total_ms.unwrap_or(DEFAULT_TOTAL_MS);
        let attempt_ms = r.attempt_ms.unwrap_or(DEFAULT_ATTEMPT_MS.min(total_ms));
        if ttft_ms == 0 || idle_ms == 0 || total_ms == 0 || attempt_ms == 0 {
            errors.push((
                path.clone(),
                "ttft_ms, idle_ms, attempt_ms and total_ms must be positive".into(),
            ));
        }
        if attempt_ms > total_ms {
            errors.push((
                format!("{path}.attempt_ms"),
                format!("{attempt_ms} exceeds total_ms ({total_ms})"),
            ));
        }
        // Only an explicit total bounds streams, so only then must the first token fit in it.
        if r.total_ms.is_some() && ttft_ms > total_ms {
            errors.push((
                format!("{path}.ttft_ms"),
                format!("{ttft_ms} exceeds total_ms ({total_ms})"),
            ));
        }
        let retry = r.retry.unwrap_or_default();
        if retry.base_ms == 0 || retry.cap_ms < retry.base_ms {
            errors.push((
                format!("{path}.retry"),
                "base_ms must be positive and cap_ms at least base_ms".into(),
            ));
        }
        if r.token_budget == Some(0) {
            errors.push((format!("{path}.token_budget"), "must be positive".into()));
        }
        if let Some(c) = r.cost_budget_usd
            && !(c.is_finite() && c > 0.0)
        {
            errors.push((
                format!("{path}.cost_budget_usd"),
                "must be a positive number of dollars".into(),
            ));
        }
        let hedge = r
            .hedge
            .as_ref()
            .and_then(|h| resolve_hedge(h, &format!("{path}.hedge"), ttft_ms, errors));
        let split =
            traffic::resolve_split(r.split.as_ref(), r.split_by.as_deref(), &path, &ids, errors);
        let shadow = traffic::resolve_shadow(r.shadow.as_ref(), &path, &ids, models, errors);
        if errors.len() > before {
            continue;
        }
        out.insert(
            name.clone(),
            RouteConfig {
                name,
                models: ids,
                weights,
                optimize: if r.weights.is_some() {
                    None
                } else {
                    Some(r.optimize.unwrap_or_default())
                },
                max_attempts,
                ttft: Duration::from_millis(ttft_ms),
                idle: Duration::from_millis(idle_ms),
                attempt: Duration::from_millis(attempt_ms),
                total: Duration::from_millis(total_ms),
                stream_total: r.total_ms.map(Duration::from_millis),
                retry,
                token_budget: r.token_budget,
                cost_budget_usd: r.cost_budget_usd,
                hedge,
                split,
                shadow,
            },
        );
    }
    // The implicit `auto` is a chat route: embedding models have their own routes.
    let chat: Vec<_> = models
        .iter()
        .filter(|(_, m)| !m.entry.is_embedding())
        .map(|(id, _)| id.clone())
        .collect();
    if !out.contains_key(DEFAULT_ROUTE) && !chat.is_empty() {
        out.insert(DEFAULT_ROUTE.to_owned(), RouteConfig::default_over(chat));
    }
    out
}
