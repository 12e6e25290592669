//! Live health of every configured model: TTFT (PeakEWMA), time per output token, decayed
//! reliability with a Beta prior, the circuit breaker, 429 cool-downs, quota disables, in-flight
//! counts, and the recent window behind `GET /ai/performance` (reference §9.2, §9.3, §10).
//!
//! The scorer reads (`snapshot`, `admit`: O(1)); the executor writes (`record_*`) after every
//! attempt. All time is a `tokio::time::Instant` passed in by the caller — this module never
//! reads the clock, so tests run on paused time. IMPORTANT: every lock here is a short
//! `std::sync::Mutex` section with no `.await` inside; never hold one across an await point.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use switchyard_types::error::{ErrorKind, ProviderError};
use switchyard_types::ids::ModelId;

use super::catalog::CatalogEntry;
use super::{breaker, retry_budget, window};

pub use breaker::{Admission, BreakerState, Comeback, Unavailable, comeback};
pub use retry_budget::{MAX_RETRY_AFTER, RetryBudget, backoff, retry_delay};
pub use window::{Percentiles, Performance};

use breaker::{Breaker, BreakerPolicy, Gatekeeper, deadline};
use window::{DecayedCounts, DecayedMean, PeakEwma, Window, millis};

/// Cool-down after a 429 that named no wait.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// `last_error` keeps at most this many characters.
const LAST_ERROR_CHARS: usize = 200;

/// One model's health settings. Every model has its own (`Health::new`): the defaults, then the
/// catalog's latency priors for it, then the config's `[health]` and `[models.X.health]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// PeakEWMA decay for time-to-first-token (Finagle's default decay time).
    pub ttft_tau: Duration,
    /// Decay of the time-per-output-token mean (reference §10: 30–60 s); also used for the
    /// output-token and time-to-fail means.
    pub tpot_tau: Duration,
    /// Decay of success/failure counts (half-life = τ·ln 2 ≈ 3.5 min at 5 min).
    pub success_tau: Duration,
    /// Beta prior α0: pseudo-successes of a model with no history.
    pub prior_success: f64,
    /// Beta prior β0: pseudo-failures (9 : 1 = an optimistic 90 %).
    pub prior_failure: f64,
    /// Consecutive health failures that open the breaker (Envoy `consecutive_5xx`).
    pub breaker_failures: u32,
    /// The breaker also opens when at least this share of the last `breaker_window` attempts
    /// (since it last closed) failed, default 0.25: a model failing one call in four is
    /// degraded even when its failures never line up five in a row.
    pub breaker_failure_rate: f64,
    /// How many recent attempts that share is taken over (at most 32), default 20.
    pub breaker_window: u32,
    /// First open period; the n-th opening in a row lasts n × this (Envoy `base_ejection_time`).
    pub breaker_base: Duration,
    /// Longest open period (Envoy `max_ejection_time`).
    pub breaker_max: Duration,
    /// A half-open probe that reports nothing for this long (its future was dropped without a
    /// `record_*`) is presumed lost, and another caller may probe.
    pub probe_lease: Duration,
    /// How long a quota-exhausted model is disabled. Also caps a 429 cool-down.
    pub quota_disable: Duration,
    /// TTFT assumed before the first observation: the model's catalog prior, else tower's
    /// PeakEwma default RTT (1 s). Also the time-to-fail prior.
    pub default_ttft: Duration,
    /// Time per output token assumed before the first observation (catalog prior, else 20 ms).
    pub default_tpot: Duration,
    /// The recent window of `performance` (rounded up to whole 10-second buckets, at most 1 h).
    pub window: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            ttft_tau: Duration::from_secs(10),
            tpot_tau: Duration::from_secs(30),
            success_tau: Duration::from_secs(300),
            prior_success: 9.0,
            prior_failure: 1.0,
            breaker_failures: 5,
            breaker_failure_rate: 0.25,
            breaker_window: 20,
            breaker_base: Duration::from_secs(30),
            breaker_max: Duration::from_secs(300),
            probe_lease: Duration::from_secs(60),
            quota_disable: Duration::from_secs(600),
            default_ttft: Duration::from_secs(1),
            default_tpot: Duration::from_millis(20),
            window: Duration::from_secs(300),
        }
    }
}

impl HealthConfig {
    /// With the catalog's published-style latency priors for the model, where it has them, so a
    /// cold start ranks models by what they are known to do rather than by one shared guess.
    pub fn with_catalog_priors(mut self, entry: &CatalogEntry) -> HealthConfig {
        if let Some(ttft) = entry.ttft_ms.and_then(from_millis) {
            self.default_ttft = ttft;
        }
        if let Some(tpot) = entry.tpot_ms.and_then(from_millis) {
            self.default_tpot = tpot;
        }
        self
    }
}

/// Milliseconds (validated finite and non-negative upstream) as a `Duration`.
fn from_millis(ms: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

/// Health of every configured model; built once at start, then shared (`Arc<Health>`).
pub struct Health {
    models: BTreeMap<ModelId, Arc<ModelHealth>>,
}

impl Health {
    /// Every model with its own settings (breaker, priors, decay).
    pub fn new(models: impl IntoIterator<Item = (ModelId, HealthConfig)>) -> Health {
        let models = models
            .into_iter()
            .map(|(id, config)| {
                let health = Arc::new(ModelHealth::new(id.clone(), Arc::new(config)));
                (id, health)
            })
            .collect();
        Health { models }
    }

    /// Every model with the same settings (tests, tools).
    pub fn uniform(config: &HealthConfig, models: impl IntoIterator<Item = ModelId>) -> Health {
        Health::new(models.into_iter().map(|id| (id, config.clone())))
    }

    pub fn get(&self, model: &str) -> Option<&Arc<ModelHealth>> {
        self.models.get(model)
    }

    /// In model-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&ModelId, &Arc<ModelHealth>)> {
        self.models.iter()
    }
}

/// A model's live state for scoring, filters and `/ai/route` explanations.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    /// PeakEWMA: jumps to a higher observation at once, decays toward lower ones with `ttft_tau`.
    pub ttft_ms: f64,
    /// Decayed mean of (total − ttft) / max(output_tokens − 1, 1) over streamed answers.
    pub tpot_ms: f64,
    pub in_flight: u32,
    /// (S + α0) / (S + F + α0 + β0), S and F decayed by exp(−Δt / success_tau).
    pub reliability: f64,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    /// `None` = may be tried now (the rule of `admit`, without taking the probe).
    pub available: Option<Unavailable>,
    /// Decayed mean time a health failure took (E_latency's T_fail); `default_ttft` before any.
    pub time_to_fail_ms: f64,
    /// Decayed mean of observed completion tokens; 0 = unknown.
    pub output_tokens_ewma: f64,
    /// `"kind: message"`, at most 200 characters.
    pub last_error: Option<String>,
    pub last_error_age_s: Option<f64>,
    /// An operator drained the model: it takes no new requests (`available` says `drained`).
    pub drained: bool,
    /// An operator's override of the breaker; `breaker` is still what the breaker observed.
    pub forced: Option<Forced>,
}

/// An operator's override of a model's breaker (`POST /admin/models/{model}/breaker`).
/// `Open` refuses every request; `Closed` lets requests through an open or half-open breaker
/// (a 429 cool-down or a quota disable still applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    Open,
    Closed,
}

impl Forced {
    pub fn as_str(self) -> &'static str {
        match self {
            Forced::Open => "open",
            Forced::Closed => "closed",
        }
    }
}

/// What an operator set on a model (drain, forced breaker). Checked before the breaker.
#[derive(Debug, Clone, Copy, Default)]
struct Operator {
    drained: bool,
    forced: Option<Forced>,
}

impl Operator {
    /// The breaker's verdict as the operator's settings change it.
    fn apply(self, why: Option<Unavailable>) -> Option<Unavailable> {
        if self.drained {
            return Some(Unavailable::Drained);
        }
        match (self.forced, why) {
            (Some(Forced::Open), _) => Some(Unavailable::ForcedOpen),
            (Some(Forced::Closed), Some(Unavailable::Open { .. } | Unavailable::Probing)) => None,
            (_, why) => why,
        }
    }
}

/// Counts since start, never decayed: the live feed turns their differences into rates
/// (`live/snapshot.rs` keeps the last minute of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub successes: u64,
    pub failures: u64,
    pub output_tokens: u64,
    /// Cost of attempts with usage, in picodollars (rounded from the dollars reported).
    pub cost_picousd: u64,
}

#[derive(Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    output_tokens: AtomicU64,
    cost_picousd: AtomicU64,
}

/// One model's health. Shared as `Arc<ModelHealth>`; every method takes `&self`.
pub struct ModelHealth {
    model: ModelId,
    config: Arc<HealthConfig>,
    policy: BreakerPolicy,
    stats: Mutex<Stats>,
    window: Mutex<Window>,
    in_flight: AtomicU32,
    operator: Mutex<Operator>,
    counters: Counters,
}

struct Stats {
    ttft: PeakEwma,
    tpot: DecayedMean,
    time_to_fail: DecayedMean,
    output_tokens: DecayedMean,
    outcomes: DecayedCounts,
    gate: Gatekeeper,
    last_error: Option<(String, Instant)>,
}

impl ModelHealth {
    pub fn new(model: ModelId, config: Arc<HealthConfig>) -> ModelHealth {
        let policy = BreakerPolicy {
            failures: config.breaker_failures,
            failure_rate: config.breaker_failure_rate,
            window: config.breaker_window.clamp(1, 32),
            base: config.breaker_base,
            max: config.breaker_max,
            probe_lease: config.probe_lease,
        };
        let window = Window::new(config.window);
        ModelHealth {
            model,
            config,
            policy,
            stats: Mutex::new(Stats {
                ttft: PeakEwma::default(),
                tpot: DecayedMean::default(),
                time_to_fail: DecayedMean::default(),
                output_tokens: DecayedMean::default(),
                outcomes: DecayedCounts::default(),
                gate: Gatekeeper::default(),
                last_error: None,
            }),
            window: Mutex::new(window),
            in_flight: AtomicU32::new(0),
            operator: Mutex::new(Operator::default()),
            counters: Counters::default(),
        }
    }

    pub fn model(&self) -> &ModelId {
        &self.model
    }

    /// May a request be sent now? Closed → `Allowed`; open before its deadline →
    /// `Rejected(Open)`; after it exactly one caller gets `Probe` and the others
    /// `Rejected(Probing)` until that probe reports; 429 → `Rejected(CoolingDown)`;
    /// quota → `Rejected(Disabled)`.
    /// A drained model or a breaker forced open refuses first (the probe is not taken); a
    /// breaker forced closed lets the request through.
    pub fn admit(&self, now: Instant) -> Admission {
        let operator = *lock(&self.operator);
        if let Some(why) = operator.apply(None) {
            return Admission::Rejected(why);
        }
        match lock(&self.stats).gate.admit(now, &self.policy) {
            Admission::Rejected(why) => match operator.apply(Some(why)) {
                Some(why) => Admission::Rejected(why),
                None => Admission::Allowed,
            },
            other => other,
        }
    }

    /// Drain the model (`true`: no new requests; those in flight finish) or bring it back.
    /// Returns whether it was drained before.
    pub fn set_drained(&self, drained: bool) -> bool {
        std::mem::replace(&mut lock(&self.operator).drained, drained)
    }

    pub fn drained(&self) -> bool {
        lock(&self.operator).drained
    }

    /// Force the breaker open or closed, or (`None`) leave it to what it observes. Returns
    /// the override before.
    pub fn force(&self, forced: Option<Forced>) -> Option<Forced> {
        std::mem::replace(&mut lock(&self.operator).forced, forced)
    }

    pub fn forced(&self) -> Option<Forced> {
        lock(&self.operator).forced
    }

    /// Close the breaker with a fresh record (no failures, no growth of its open period) and
    /// drop a forced override. Cool-downs, quota disables and a drain stay.
    pub fn reset_breaker(&self) {
        lock(&self.operator).forced = None;
        lock(&self.stats).gate.breaker = Breaker::default();
    }

    /// Counts since start (successes, failures, output tokens, cost).
    pub fn totals(&self) -> Totals {
        let c = &self.counters;
        Totals {
            successes: c.successes.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            output_tokens: c.output_tokens.load(Ordering::Relaxed),
            cost_picousd: c.cost_picousd.load(Ordering::Relaxed),
        }
    }

    /// This model's settings.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Why the model may not be tried now (`None`: it may), without taking the probe: what the
    /// gateway reads to tell a client when to come back.
    pub fn unavailable(&self, now: Instant) -> Option<Unavailable> {
        let operator = *lock(&self.operator);
        operator.apply(lock(&self.stats).gate.available(now, &self.policy))
    }

    /// Read-only view for scoring and filters; never takes the half-open probe.
    pub fn snapshot(&self, now: Instant) -> HealthSnapshot {
        let cfg = &*self.config;
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let operator = *lock(&self.operator);
        let stats = lock(&self.stats);
        let (successes, failures) = stats.outcomes.at(now, cfg.success_tau);
        let (a0, b0) = (cfg.prior_success.max(0.0), cfg.prior_failure.max(0.0));
        let denominator = successes + failures + a0 + b0;
        let reliability = if denominator > 0.0 {
            (successes + a0) / denominator
        } else {
            1.0
        };
        HealthSnapshot {
            ttft_ms: stats.ttft.get().unwrap_or(millis(cfg.default_ttft)),
            tpot_ms: stats.tpot.get().unwrap_or(millis(cfg.default_tpot)),
            in_flight,
            reliability,
            breaker: stats.gate.breaker.state(now),
            consecutive_failures: stats.gate.breaker.consecutive_failures(),
            available: operator.apply(stats.gate.available(now, &self.policy)),
            time_to_fail_ms: stats.time_to_fail.get().unwrap_or(millis(cfg.default_ttft)),
            output_tokens_ewma: stats.output_tokens.get().unwrap_or(0.0),
            last_error: stats.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_age_s: stats
                .last_error
                .as_ref()
                .map(|(_, at)| now.saturating_duration_since(*at).as_secs_f64()),
            drained: operator.drained,
            forced: operator.forced,
        }
    }

    /// Count an attempt as in flight until the guard drops (also when its future is cancelled).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            model: Arc::clone(self),
        }
    }

    /// A successful attempt. `ttft` is the first token (or the whole answer when not streaming),
    /// `total` the whole attempt. TPOT learns only from streamed answers (`total > ttft`);
    /// `output_tokens` 0 means "not reported" and teaches nothing.
    pub fn record_success(
        &self,
        now: Instant,
        ttft: Duration,
        total: Duration,
        output_tokens: u32,
    ) {
        let cfg = &*self.config;
        {
            let mut stats = lock(&self.stats);
            stats.ttft.observe(now, millis(ttft), cfg.ttft_tau);
            if total > ttft && output_tokens > 0 {
                let per_token =
                    millis(total - ttft) / f64::from(output_tokens.saturating_sub(1).max(1));
                stats.tpot.observe(now, per_token, cfg.tpot_tau);
            }
            if output_tokens > 0 {
                stats
                    .output_tokens
                    .observe(now, f64::from(output_tokens), cfg.tpot_tau);
            }
            stats.outcomes.add(now, true, cfg.success_tau);
            stats.gate.breaker.on_success(now, &self.policy);
        }
        lock(&self.window).success(now, total, ttft);
        self.counters.successes.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed attempt that took `elapsed`. Health failures (`ErrorKind::is_health_failure`)
    /// count toward the breaker and the failure rate; 429 cools the model down until
    /// `now + retry_after` (1 s if none; extended by a later, longer one, never shortened);
    /// quota exhaustion disables it for `quota_disable`. Other kinds (client errors, and a
    /// request the provider cannot express, `Unsupported`) change only `last_error` and the
    /// window's count by kind — and, like every non-health outcome, free a half-open probe
    /// slot, since they tested nothing.
    pub fn record_failure(&self, now: Instant, error: &ProviderError, elapsed: Duration) {
        let cfg = &*self.config;
        let kind = error.kind;
        {
            let mut stats = lock(&self.stats);
            stats.last_error = Some((describe(error), now));
            if kind.is_health_failure() {
                stats.outcomes.add(now, false, cfg.success_tau);
                stats
                    .time_to_fail
                    .observe(now, millis(elapsed), cfg.tpot_tau);
                stats.gate.breaker.on_failure(now, &self.policy);
            } else {
                match kind {
                    ErrorKind::RateLimited => {
                        let wait = error.retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
                        stats
                            .gate
                            .cool_down(deadline(now, wait.min(cfg.quota_disable)));
                    }
                    ErrorKind::QuotaExhausted => {
                        stats.gate.disable(deadline(now, cfg.quota_disable));
                    }
                    _ => {}
                }
                stats.gate.breaker.on_neutral(now);
            }
        }
        lock(&self.window).failure(now, kind);
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The caller gave up for a reason that says nothing about the model (client disconnect):
    /// frees a half-open probe slot, counts nothing.
    pub fn record_abandoned(&self, now: Instant) {
        lock(&self.stats).gate.breaker.on_neutral(now);
    }

    /// Tokens and cost of an attempt (success, or a failure that still reported usage), for the
    /// window's sums.
    pub fn record_usage(&self, now: Instant, input_tokens: u32, output_tokens: u32, cost_usd: f64) {
        lock(&self.window).usage(now, input_tokens, output_tokens, cost_usd);
        let c = &self.counters;
        c.output_tokens
            .fetch_add(u64::from(output_tokens), Ordering::Relaxed);
        if cost_usd.is_finite() && cost_usd > 0.0 {
            // `as` saturates: an absurd cost cannot wrap the counter.
            let pico = (cost_usd * 1e12).round() as u64;
            c.cost_picousd.fetch_add(pico, Ordering::Relaxed);
        }
    }

    /// The last `window` of traffic, for `GET /ai/performance`.
    pub fn performance(&self, now: Instant) -> Performance {
        lock(&self.window).performance(now)
    }

    /// The `q` quantile (ms) of this model's recent time to first token (`first_token`) or to
    /// the whole answer, with the number of successes behind it (`Window::quantile`).
    pub fn latency_quantile(&self, now: Instant, q: f64, first_token: bool) -> (u64, Option<f64>) {
        lock(&self.window).quantile(now, q, first_token)
    }
}

/// An attempt in flight; dropping it (completion or cancellation) decrements the count.
#[must_use = "the attempt counts as in flight only while the guard lives"]
pub struct InFlight {
    model: Arc<ModelHealth>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.model.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A poisoned lock still holds consistent numbers (no section here can leave them half-updated
/// in a way that matters), so take the value rather than propagate the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn describe(error: &ProviderError) -> String {
    let mut text = format!("{}: {}", error.kind.label(), error.message);
    if let Some((cut, _)) = text.char_indices().nth(LAST_ERROR_CHARS) {
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn model() -> Arc<ModelHealth> {
        Arc::new(ModelHealth::new(
            ModelId::new("m"),
            Arc::new(HealthConfig::default()),
        ))
    }

    fn err(kind: ErrorKind) -> ProviderError {
        ProviderError::new(kind, "upstream said no")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(got: f64, want: f64, tolerance: f64) {
        assert!((got - want).abs() <= tolerance, "got {got}, want {want}");
    }

    #[tokio::test(start_paused = true)]
    async fn ttft_jumps_to_peaks_and_decays_toward_fast_observations() {
        let h = model();
        let s = h.snapshot(Instant::now());
        assert_eq!(
            (s.ttft_ms, s.tpot_ms, s.output_tokens_ewma),
            (1000.0, 20.0, 0.0)
        );
        h.record_success(Instant::now(), ms(100), ms(100), 0);
        assert_eq!(h.snapshot(Instant::now()).ttft_ms, 100.0);
        advance(Duration::from_secs(1)).await;
        h.record_success(Instant::now(), ms(800), ms(800), 0);
        assert_eq!(h.snapshot(Instant::now()).ttft_ms, 800.0);
        // One τ later a fast answer pulls it 1 − 1/e of the way down.
        advance(Duration::from_secs(10)).await;
        h.record_success(Instant::now(), ms(100), ms(100), 0);
        let e = (-1.0f64).exp();
        close(
            h.snapshot(Instant::now()).ttft_ms,
            800.0 * e + 100.0 * (1.0 - e),
            1e-9,
        );
        for _ in 0..60 {
            advance(Duration::from_secs(1)).await;
            h.record_success(Instant::now(), ms(100), ms(100), 0);
        }
        close(h.snapshot(Instant::now()).ttft_ms, 100.0, 1.0);
        // Non-streamed answers (ttft = total) and unreported usage teach TPOT nothing.
        let s = h.snapshot(Instant::now());
        assert_eq!((s.tpot_ms, s.output_tokens_ewma), (20.0, 0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn tpot_and_output_tokens_are_decayed_means() {
        let h = model();
        // (2100 − 100) ms over 100 tokens after the first = 20 ms per token.
        h.record_success(Instant::now(), ms(100), ms(2100), 101);
        let s = h.snapshot(Instant::now());
        close(s.tpot_ms, 20.0, 1e-9);
        assert_eq!(s.output_tokens_ewma, 101.0);
        advance(Duration::from_secs(30)).await;
        h.record_success(Instant::now(), ms(100), ms(4100), 301);
        let e = (-1.0f64).exp();
        let s = h.snapshot(Instant::now());
        close(s.tpot_ms, (20.0 * e + 13.333_333_333) / (1.0 + e), 1e-6);
        close(s.output_tokens_ewma, (101.0 * e + 301.0) / (1.0 + e), 1e-9);
        // A single-token stream divides by 1, not 0.
        let one = model();
        one.record_success(Instant::now(), ms(100), ms(130), 1);
        close(one.snapshot(Instant::now()).tpot_ms, 30.0, 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn reliability_starts_at_the_prior_drops_on_failures_and_decays_back() {
        let h = model();
        let t0 = Instant::now();
        close(h.snapshot(t0).reliability, 0.9, 1e-12);
        for _ in 0..10 {
            h.record_failure(t0, &err(ErrorKind::Server), ms(50));
        }
        let s = h.snapshot(t0);
        close(s.reliability, 9.0 / 20.0, 1e-12);
        close(s.time_to_fail_ms, 50.0, 1e-9);
        advance(Duration::from_secs(300)).await;
        let f = 10.0 * (-1.0f64).exp();
        close(
            h.snapshot(Instant::now()).reliability,
            9.0 / (10.0 + f),
            1e-9,
        );
        advance(Duration::from_secs(1800)).await;
        close(h.snapshot(Instant::now()).reliability, 0.9, 0.002);
        for _ in 0..90 {
            h.record_success(Instant::now(), ms(10), ms(10), 1);
        }
        close(h.snapshot(Instant::now()).reliability, 0.99, 0.001);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_guard_counts_and_releases_on_drop_and_cancel() {
        let h = model();
        let in_flight = |h: &ModelHealth| h.snapshot(Instant::now()).in_flight;
        let a = h.start();
        let b = h.start();
        assert_eq!(in_flight(&h), 2);
        drop(a);
        assert_eq!(in_flight(&h), 1);
        let attempt_health = Arc::clone(&h);
        let mut attempt = Box::pin(async move {
            let _guard = attempt_health.start();
            std::future::pending::<()>().await;
        });
        assert!(futures::poll!(&mut attempt).is_pending());
        assert_eq!(in_flight(&h), 2);
        // A cancelled attempt (its future dropped) gives its slot back.
        drop(attempt);
        assert_eq!(in_flight(&h), 1);
        drop(b);
        assert_eq!(in_flight(&h), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn last_error_is_truncated_and_aged_and_the_snapshot_serialises() {
        let h = model();
        let long = ProviderError::new(ErrorKind::Server, "é".repeat(500));
        h.record_failure(Instant::now(), &long, ms(5));
        advance(Duration::from_secs(3)).await;
        let s = h.snapshot(Instant::now());
        let text = s.last_error.clone().unwrap_or_default();
        assert_eq!(text.chars().count(), 200);
        assert!(text.starts_with("server_error: éé"));
        assert_eq!(s.last_error_age_s, Some(3.0));
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["breaker"], "closed");
        assert_eq!(json["available"], serde_json::Value::Null);
        assert_eq!(json["consecutive_failures"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_drains_forces_and_resets() {
        let h = model();
        let now = Instant::now();
        assert!(!h.set_drained(true));
        assert_eq!(h.admit(now), Admission::Rejected(Unavailable::Drained));
        let s = h.snapshot(now);
        assert_eq!((s.available, s.drained), (Some(Unavailable::Drained), true));
        assert!(h.set_drained(false));
        assert_eq!(h.admit(now), Admission::Allowed);
        assert_eq!(h.force(Some(Forced::Open)), None);
        assert_eq!(h.unavailable(now), Some(Unavailable::ForcedOpen));
        assert_eq!(h.admit(now), Admission::Rejected(Unavailable::ForcedOpen));
        // Forced closed: a breaker that opened still lets requests through.
        h.force(Some(Forced::Closed));
        for _ in 0..5 {
            h.record_failure(now, &err(ErrorKind::Server), ms(1));
        }
        assert!(matches!(h.snapshot(now).breaker, BreakerState::Open { .. }));
        assert_eq!(h.admit(now), Admission::Allowed);
        assert_eq!(h.snapshot(now).available, None);
        h.force(None);
        assert!(matches!(
            h.admit(now),
            Admission::Rejected(Unavailable::Open { .. })
        ));
        h.force(Some(Forced::Open));
        h.reset_breaker();
        let s = h.snapshot(now);
        assert_eq!(
            (s.breaker, s.forced, s.consecutive_failures),
            (BreakerState::Closed, None, 0)
        );
        assert_eq!(h.admit(now), Admission::Allowed);
        assert_eq!(h.totals().failures, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn health_holds_every_configured_model() {
        let health = Health::uniform(
            &HealthConfig::default(),
            ["b", "a"].into_iter().map(ModelId::new),
        );
        assert!(health.get("a").is_some() && health.get("zzz").is_none());
        let names: Vec<&str> = health.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let now = Instant::now();
        if let Some(a) = health.get("a") {
            a.record_success(now, ms(10), ms(30), 3);
            a.record_usage(now, 12, 3, 0.001);
            a.record_failure(now, &err(ErrorKind::Timeout), ms(100));
            let p = a.performance(now);
            assert_eq!((p.requests, p.successes, p.input_tokens), (2, 1, 12));
            assert_eq!(a.model().as_str(), "a");
        }
    }
}

#[cfg(test)]
#[path = "priors_tests.rs"]
mod priors_tests;
