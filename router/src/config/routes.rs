//! `[routes.NAME]`: a named set of candidate models with a preference, attempt limits, timeouts
//! and a retry policy. A route named `auto` always exists: when the config has none, it is made
//! from every configured model with a balanced preference.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::ModelId;

/// The default route's name: what `model: "auto"` and `/ai/route` without `route` use.
pub const DEFAULT_ROUTE: &str = "auto";

/// What a route (or a request) optimises for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimize {
    Cost,
    Latency,
    Reliability,
    #[default]
    Balanced,
}

/// Weights of the three score terms (each a log-ratio to the best candidate, so unit-free).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub latency: f64,
    #[serde(default)]
    pub reliability: f64,
}

impl Optimize {
    /// The preset weights. Every preset keeps a little of each term so ties break sensibly
    /// (a free local model that is also fast wins a latency tie over a paid one).
    pub fn weights(self) -> Weights {
        let (cost, latency, reliability) = match self {
            Optimize::Cost => (1.0, 0.1, 0.3),
            Optimize::Latency => (0.1, 1.0, 0.3),
            Optimize::Reliability => (0.1, 0.1, 1.0),
            Optimize::Balanced => (1.0, 1.0, 1.0),
        };
        Weights {
            cost,
            latency,
            reliability,
        }
    }
}

impl Weights {
    pub fn validate(&self) -> Result<(), String> {
        let all = [self.cost, self.latency, self.reliability];
        if all.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err("weights must be finite and non-negative".into());
        }
        if all.iter().all(|w| *w == 0.0) {
            return Err("at least one weight must be positive".into());
        }
        Ok(())
    }
}

/// Retries of the same model before moving on, with full-jitter backoff.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Extra attempts on the same model after a retryable failure (0 = go straight to the next).
    #[serde(default = "default_retries")]
    pub max_per_model: u32,
    #[serde(default = "default_base_ms")]
    pub base_ms: u64,
    #[serde(default = "default_cap_ms")]
    pub cap_ms: u64,
}

fn default_retries() -> u32 {
    1
}
fn default_base_ms() -> u64 {
    100
}
fn default_cap_ms() -> u64 {
    2_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_per_model: default_retries(),
            base_ms: default_base_ms(),
            cap_ms: default_cap_ms(),
        }
    }
}

/// `[routes.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub models: Vec<String>,
    pub optimize: Option<Optimize>,
    pub weights: Option<Weights>,
    pub max_attempts: Option<u32>,
    pub ttft_ms: Option<u64>,
    pub attempt_ms: Option<u64>,
    pub total_ms: Option<u64>,
    pub retry: Option<RetryPolicy>,
    pub token_budget: Option<u32>,
    pub cost_budget_usd: Option<f64>,
}

/// A validated route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    pub name: String,
    /// Never empty.
    pub models: Vec<ModelId>,
    pub weights: Weights,
    pub optimize: Option<Optimize>,
    /// Attempts in all, across candidates and retries.
    pub max_attempts: u32,
    /// Streaming, per attempt: the first token must arrive by then, and no later token may take
    /// longer than this after the previous one (a stalled stream is a failed one).
    pub ttft: Duration,
    /// Non-streaming, per attempt: the whole answer must arrive by then (a non-streamed answer
    /// sends nothing before it is complete, so TTFT cannot bound it).
    pub attempt: Duration,
    /// The whole request, all attempts included.
    pub total: Duration,
    pub retry: RetryPolicy,
    /// Prompt tokens the route's policies should fit the conversation into (given to policies).
    pub token_budget: Option<u32>,
    /// Cost cap per request in USD, given to policies (a request's `max_cost_usd` overrides it).
    pub cost_budget_usd: Option<f64>,
}

const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_TTFT_MS: u64 = 15_000;
const DEFAULT_ATTEMPT_MS: u64 = 60_000;
const DEFAULT_TOTAL_MS: u64 = 120_000;

impl RouteConfig {
    /// The route made when a config has no `auto`: every model, balanced.
    pub fn default_over(models: Vec<ModelId>) -> RouteConfig {
        RouteConfig {
            name: DEFAULT_ROUTE.to_owned(),
            models,
            weights: Optimize::Balanced.weights(),
            optimize: Some(Optimize::Balanced),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            ttft: Duration::from_millis(DEFAULT_TTFT_MS),
            attempt: Duration::from_millis(DEFAULT_ATTEMPT_MS),
            total: Duration::from_millis(DEFAULT_TOTAL_MS),
            retry: RetryPolicy::default(),
            token_budget: None,
            cost_budget_usd: None,
        }
    }

    /// A request naming one model directly routes over just that model.
    pub fn single(model: ModelId) -> RouteConfig {
        let mut r = RouteConfig::default_over(vec![model.clone()]);
        r.name = model.to_string();
        r
    }
}

/// Validate raw routes against the configured models; errors as `(path, message)`.
pub(super) fn resolve(
    raw: BTreeMap<String, RawRoute>,
    models: &BTreeMap<ModelId, super::ModelConfig>,
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
        let total_ms = r.total_ms.unwrap_or(DEFAULT_TOTAL_MS);
        let attempt_ms = r.attempt_ms.unwrap_or(DEFAULT_ATTEMPT_MS.min(total_ms));
        if ttft_ms == 0 || total_ms == 0 || attempt_ms == 0 {
            errors.push((
                path.clone(),
                "ttft_ms, attempt_ms and total_ms must be positive".into(),
            ));
        }
        if attempt_ms > total_ms {
            errors.push((
                format!("{path}.attempt_ms"),
                format!("{attempt_ms} exceeds total_ms ({total_ms})"),
            ));
        }
        if ttft_ms > total_ms {
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
                attempt: Duration::from_millis(attempt_ms),
                total: Duration::from_millis(total_ms),
                retry,
                token_budget: r.token_budget,
                cost_budget_usd: r.cost_budget_usd,
            },
        );
    }
    if !out.contains_key(DEFAULT_ROUTE) && !models.is_empty() {
        out.insert(
            DEFAULT_ROUTE.to_owned(),
            RouteConfig::default_over(models.keys().cloned().collect()),
        );
    }
    out
}
