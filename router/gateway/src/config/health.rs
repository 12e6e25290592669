//! `[health]` and `[models.X.health]`: how the gateway judges a model — the breaker's open time
//! and trip rules, the reliability prior, the decays, the quota disable and the latency priors —
//! for every model, and per model. Each value is checked with its path; the runtime form is
//! `switchyard_routing::health::HealthConfig`, one per model (`HealthSettings::for_model`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use switchyard_routing::catalog::MAX_PRIOR_MS;
use switchyard_routing::health::HealthConfig;
use switchyard_routing::route::ModelConfig;
use switchyard_types::ids::ModelId;

use super::{Errors, quote_key};

/// The longest period a health setting may name: a day.
const MAX_MS: u64 = 86_400_000;
/// The largest pseudo-count of the reliability prior.
const MAX_PRIOR_COUNT: f64 = 1e6;
/// Consecutive failures a breaker may be set to wait for.
const MAX_FAILURES: u32 = 1000;
/// The breaker's failure-share window is a 32-bit record.
const MAX_WINDOW: u32 = 32;

/// One health table, as written: every field optional, laid over the defaults (`[health]`) or
/// over `[health]` (`[models.X.health]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// First open period of the breaker; the n-th opening in a row lasts n × this.
    pub breaker_base_ms: Option<u64>,
    /// Longest open period.
    pub breaker_max_ms: Option<u64>,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: Option<u32>,
    /// ...or this share of failures among the last `breaker_window` attempts, in (0, 1].
    pub breaker_failure_rate: Option<f64>,
    /// Attempts that share is taken over, 1 to 32.
    pub breaker_window: Option<u32>,
    /// Pseudo-successes of a model with no history (Beta prior α0).
    pub prior_success: Option<f64>,
    /// Pseudo-failures (β0).
    pub prior_failure: Option<f64>,
    /// Decay of the time-to-first-token estimate.
    pub ttft_tau_ms: Option<u64>,
    /// Decay of the time-per-token, output-token and time-to-fail means.
    pub tpot_tau_ms: Option<u64>,
    /// Decay of success and failure counts.
    pub success_tau_ms: Option<u64>,
    /// How long a model out of quota is disabled (also the longest 429 cool-down).
    pub quota_disable_ms: Option<u64>,
    /// Time to first token assumed before any traffic. Per model it replaces the catalog's
    /// prior; in `[health]` it is the prior of models the catalog has none for.
    pub ttft_ms: Option<f64>,
    /// Time per output token assumed before any traffic (as `ttft_ms`).
    pub tpot_ms: Option<f64>,
}

impl HealthSection {
    /// `self`'s fields over `config`.
    fn apply(&self, config: &mut HealthConfig) {
        let ms = Duration::from_millis;
        let set = |slot: &mut Duration, v: Option<u64>| {
            if let Some(v) = v {
                *slot = ms(v);
            }
        };
        set(&mut config.breaker_base, self.breaker_base_ms);
        set(&mut config.breaker_max, self.breaker_max_ms);
        set(&mut config.ttft_tau, self.ttft_tau_ms);
        set(&mut config.tpot_tau, self.tpot_tau_ms);
        set(&mut config.success_tau, self.success_tau_ms);
        set(&mut config.quota_disable, self.quota_disable_ms);
        let prior = |slot: &mut Duration, v: Option<f64>| {
            if let Some(d) = v.and_then(|v| Duration::try_from_secs_f64(v / 1000.0).ok()) {
                *slot = d;
            }
        };
        prior(&mut config.default_ttft, self.ttft_ms);
        prior(&mut config.default_tpot, self.tpot_ms);
        config.breaker_failures = self.breaker_failures.unwrap_or(config.breaker_failures);
        config.breaker_failure_rate = self
            .breaker_failure_rate
            .unwrap_or(config.breaker_failure_rate);
        config.breaker_window = self.breaker_window.unwrap_or(config.breaker_window);
        config.prior_success = self.prior_success.unwrap_or(config.prior_success);
        config.prior_failure = self.prior_failure.unwrap_or(config.prior_failure);
    }

    /// The fields that are set, as written (`breaker_base_ms = 5000, ttft_ms = 300`).
    fn describe(&self) -> String {
        let ints = [
            ("breaker_base_ms", self.breaker_base_ms),
            ("breaker_max_ms", self.breaker_max_ms),
            ("breaker_failures", self.breaker_failures.map(u64::from)),
            ("breaker_window", self.breaker_window.map(u64::from)),
            ("ttft_tau_ms", self.ttft_tau_ms),
            ("tpot_tau_ms", self.tpot_tau_ms),
            ("success_tau_ms", self.success_tau_ms),
            ("quota_disable_ms", self.quota_disable_ms),
        ];
        let floats = [
            ("breaker_failure_rate", self.breaker_failure_rate),
            ("prior_success", self.prior_success),
            ("prior_failure", self.prior_failure),
            ("ttft_ms", self.ttft_ms),
            ("tpot_ms", self.tpot_ms),
        ];
        let ints = ints
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")));
        let floats = floats
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")));
        ints.chain(floats).collect::<Vec<_>>().join(", ")
    }

    /// Each value on its own: (field, problem).
    fn check_values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let periods = [
            ("breaker_base_ms", self.breaker_base_ms),
            ("breaker_max_ms", self.breaker_max_ms),
            ("ttft_tau_ms", self.ttft_tau_ms),
            ("tpot_tau_ms", self.tpot_tau_ms),
            ("success_tau_ms", self.success_tau_ms),
            ("quota_disable_ms", self.quota_disable_ms),
        ];
        for (name, v) in periods {
            if v.is_some_and(|v| !(1..=MAX_MS).contains(&v)) {
                out.push((name, format!("must be 1 to {MAX_MS} milliseconds")));
            }
        }
        if self
            .breaker_failures
            .is_some_and(|n| !(1..=MAX_FAILURES).contains(&n))
        {
            out.push((
                "breaker_failures",
                format!("must be 1 to {MAX_FAILURES} failures"),
            ));
        }
        if self
            .breaker_failure_rate
            .is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 1.0))
        {
            out.push((
                "breaker_failure_rate",
                "must be a share above 0 and at most 1".to_owned(),
            ));
        }
        if self
            .breaker_window
            .is_some_and(|w| !(1..=MAX_WINDOW).contains(&w))
        {
            out.push((
                "breaker_window",
                format!("must be 1 to {MAX_WINDOW} attempts"),
            ));
        }
        for (name, v) in [
            ("prior_success", self.prior_success),
            ("prior_failure", self.prior_failure),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && (0.0..=MAX_PRIOR_COUNT).contains(&v))) {
                out.push((
                    name,
                    format!("must be a pseudo-count from 0 to {MAX_PRIOR_COUNT}"),
                ));
            }
        }
        if self
            .ttft_ms
            .is_some_and(|v| !(v.is_finite() && v > 0.0 && v <= MAX_PRIOR_MS))
        {
            out.push((
                "ttft_ms",
                format!("must be milliseconds above 0, at most {MAX_PRIOR_MS}"),
            ));
        }
        if self
            .tpot_ms
            .is_some_and(|v| !(v.is_finite() && (0.0..=MAX_PRIOR_MS).contains(&v)))
        {
            out.push((
                "tpot_ms",
                format!("must be milliseconds from 0 to {MAX_PRIOR_MS}"),
            ));
        }
        out
    }
}

/// The validated health settings: `[health]` and each model's `[models.X.health]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSettings {
    pub global: HealthSection,
    /// Only models that have a table of their own.
    pub models: BTreeMap<ModelId, HealthSection>,
}

impl HealthSettings {
    /// What `model` runs with: `base` (the defaults, or a test's timings), then `[health]`, then
    /// the catalog's latency priors for the model, then its own `[models.X.health]`.
    pub fn for_model(&self, model: &ModelConfig, base: &HealthConfig) -> HealthConfig {
        let mut config = base.clone();
        self.global.apply(&mut config);
        let mut config = config.with_catalog_priors(&model.entry);
        if let Some(own) = self.models.get(&model.id) {
            own.apply(&mut config);
        }
        config
    }

    /// The settings that differ from the defaults, for `switchyard check`; `None` when none do.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.global != HealthSection::default() {
            parts.push(format!("[health] {}", self.global.describe()));
        }
        for (model, section) in &self.models {
            parts.push(format!("{model}: {}", section.describe()));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Check `[health]` and every model's table, and keep the tables of models that resolved.
pub(super) fn resolve(
    global: HealthSection,
    own: BTreeMap<String, HealthSection>,
    models: &BTreeMap<ModelId, ModelConfig>,
    errors: &mut Errors,
) -> HealthSettings {
    check(&global, None, "health", errors);
    let mut kept = BTreeMap::new();
    for (name, section) in own {
        let path = format!("models.{}.health", quote_key(&name));
        check(&section, Some(&global), &path, errors);
        if let Some(model) = models.get(name.as_str()) {
            kept.insert(model.id.clone(), section);
        }
    }
    HealthSettings {
        global,
        models: kept,
    }
}

/// One table's values, then what it and the tables under it make together: a breaker whose
/// first period is longer than its longest, or a prior with no weight at all.
fn check(section: &HealthSection, over: Option<&HealthSection>, path: &str, errors: &mut Errors) {
    let problems = section.check_values();
    let clean = problems.is_empty();
    for (field, message) in problems {
        errors.push(format!("{path}.{field}"), message);
    }
    if !clean {
        return;
    }
    let mut config = HealthConfig::default();
    if let Some(global) = over {
        global.apply(&mut config);
    }
    section.apply(&mut config);
    // A model's table is blamed only for what it sets; the rest is `[health]`'s own check.
    let own = |a: bool, b: bool| over.is_none() || a || b;
    let periods = own(
        section.breaker_base_ms.is_some(),
        section.breaker_max_ms.is_some(),
    );
    let priors = own(
        section.prior_success.is_some(),
        section.prior_failure.is_some(),
    );
    if periods && config.breaker_base > config.breaker_max {
        errors.push(
            format!("{path}.breaker_base_ms"),
            format!(
                "the first open period ({} ms) is longer than breaker_max_ms ({} ms)",
                config.breaker_base.as_millis(),
                config.breaker_max.as_millis()
            ),
        );
    }
    if priors && config.prior_success + config.prior_failure <= 0.0 {
        errors.push(
            format!("{path}.prior_success"),
            "prior_success and prior_failure cannot both be 0 (a model with no history would \
             have no reliability)",
        );
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
