//! What routing is asked to route over: a route (a named set of candidate models with a
//! preference, attempt limits, timeouts and a retry policy) and the models it names. Plain data
//! that the gateway's config fills in; a route named `auto` always exists (see
//! `RouteConfig::default_over`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use switchyard_types::ids::{ModelId, ProviderId};

use crate::catalog::CatalogEntry;

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

/// Weights of the score terms (each a log-ratio to the best candidate, so unit-free).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub latency: f64,
    #[serde(default)]
    pub reliability: f64,
    /// Quality from feedback (`quality.rs`); 0 by default, so rankings without it are unchanged.
    #[serde(default)]
    pub quality: f64,
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
            quality: 0.0,
        }
    }
}

impl Weights {
    pub fn validate(&self) -> Result<(), String> {
        let all = [self.cost, self.latency, self.reliability, self.quality];
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
    /// Streaming, per attempt: the first token must arrive by then.
    pub ttft: Duration,
    /// Streaming, after the first token: no chunk may take longer than this after the previous
    /// one (a stalled stream is a failed one). Time spent waiting for a slow client to read is
    /// not counted.
    pub idle: Duration,
    /// Non-streaming, per attempt: the whole answer must arrive by then (a non-streamed answer
    /// sends nothing before it is complete, so TTFT cannot bound it).
    pub attempt: Duration,
    /// A complete (non-streamed) request, all attempts included.
    pub total: Duration,
    /// A streamed request, all attempts included: only when the route sets `total_ms`. A
    /// stream is otherwise bounded by `ttft` and `idle` alone, so a long answer (a reasoning
    /// model, an agent's long turn) that keeps producing tokens is never cut.
    pub stream_total: Option<Duration>,
    pub retry: RetryPolicy,
    /// Prompt tokens the route's policies should fit the conversation into (given to policies).
    pub token_budget: Option<u32>,
    /// Cost cap per request in USD, given to policies (a request's `max_cost_usd` overrides it).
    pub cost_budget_usd: Option<f64>,
    /// Hedged requests: a second attempt when the first is slow (off when `None`).
    pub hedge: Option<Hedge>,
    /// A canary split among some of the route's models (`split`, `split_by`).
    pub split: Option<crate::split::Split>,
    /// A copy of sampled requests sent to another model once the answer is out (`shadow`).
    pub shadow: Option<Shadow>,
}

/// `shadow = { model, sample, log_text, bill }`: after the answer of a sampled request (a
/// stream: when it ends), the same request, as it was sent upstream, goes to `model`. Its
/// answer is discarded; its latency, cost, tokens and (with `log_text`) text are logged in a row
/// of its own that names the original (`shadow_of`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shadow {
    pub model: ModelId,
    /// The share of the route's answered requests that are shadowed, in [0, 1].
    pub sample: f64,
    /// Keep the shadow's answer text in its log row (default false: the log holds no text).
    pub log_text: bool,
    /// Charge the shadow to the key's budget and spend (default false).
    pub bill: bool,
}

/// `hedge = { after_ms = N }` or `hedge = { after = "p90" }`, with `max_share`: when the first
/// attempt has produced nothing after the wait, start one more on the next candidate; the first to
/// answer wins and the other is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hedge {
    pub after: HedgeAfter,
    /// At most this share of the route's recent requests (the last 10 s) may hedge.
    pub max_share: f64,
}

/// How long the first attempt may take before the hedge starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HedgeAfter {
    /// A fixed wait.
    Fixed(#[serde(serialize_with = "as_ms")] Duration),
    /// The first model's live quantile (`q` = 0.9 for `"p90"`) of its time to first token (streams)
    /// or to the answer (complete answers), over its recent successes; `fallback` until it has
    /// `MIN_HEDGE_SAMPLES` of them; never less than `floor`.
    Quantile {
        q: f64,
        #[serde(serialize_with = "as_ms")]
        fallback: Duration,
        #[serde(serialize_with = "as_ms")]
        floor: Duration,
    },
}

/// Successes a model needs in its window before its live quantile is trusted as the hedge wait.
pub const MIN_HEDGE_SAMPLES: u64 = 20;
/// Default `max_share`: one request in twenty may hedge.
pub const DEFAULT_HEDGE_SHARE: f64 = 0.05;

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_TTFT_MS: u64 = 15_000;
pub const DEFAULT_ATTEMPT_MS: u64 = 60_000;
pub const DEFAULT_TOTAL_MS: u64 = 120_000;

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
            idle: Duration::from_millis(DEFAULT_TTFT_MS),
            attempt: Duration::from_millis(DEFAULT_ATTEMPT_MS),
            total: Duration::from_millis(DEFAULT_TOTAL_MS),
            stream_total: None,
            retry: RetryPolicy::default(),
            token_budget: None,
            cost_budget_usd: None,
            hedge: None,
            split: None,
            shadow: None,
        }
    }

    /// The deadline of a whole request, all attempts included: always for a complete answer,
    /// only when set explicitly for a stream.
    pub fn total_for(&self, stream: bool) -> Option<Duration> {
        if stream {
            self.stream_total
        } else {
            Some(self.total)
        }
    }

    /// A request naming one model directly routes over just that model.
    pub fn single(model: ModelId) -> RouteConfig {
        let mut r = RouteConfig::default_over(vec![model.clone()]);
        r.name = model.to_string();
        r
    }
}

/// A model clients can call: which provider serves it, under which id, and its catalog entry.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub id: ModelId,
    pub provider: ProviderId,
    /// The id the provider knows (e.g. `claude-3-5-haiku-20241022`).
    pub upstream: String,
    pub entry: CatalogEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_have_no_total_deadline_unless_one_is_set() {
        let mut r = RouteConfig::default_over(vec![ModelId::new("m")]);
        assert_eq!(
            r.total_for(false),
            Some(Duration::from_millis(DEFAULT_TOTAL_MS))
        );
        assert_eq!(r.total_for(true), None);
        assert_eq!(r.idle, r.ttft);
        r.stream_total = Some(Duration::from_secs(5));
        assert_eq!(r.total_for(true), Some(Duration::from_secs(5)));
    }
}
