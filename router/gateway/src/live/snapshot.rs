//! The one-second task behind the live feed: one snapshot a second for every client (the
//! schema is /work/notes/snapshot.md, copied into the README's "Live feed"), and the watchers
//! that turn state into events — a model's breaker changing state, the policy registry
//! reloading.
//!
//! One task for the whole gateway, not one per client: it always runs (the watchers publish
//! to other subscribers too, e.g. the alerts), at the cost of one pass over the models a second;
//! the snapshot's JSON is built only while a client watches, once, and shared as an `Arc`.
//! Rates come from the models' running totals (`ModelHealth::totals`), sampled every tick: the
//! last 61 samples give the last 10 s and the last minute. The task ends when the gateway does
//! (its `Live` is dropped).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::{BreakerEvent, Event, Live, PolicyEvent};
use crate::cache::ResponseCache;
use crate::config::Config;
use crate::keys::Keys;
use switchyard_routing::health::{BreakerState, Health, HealthSnapshot, Totals};
use switchyard_types::clock::now_ms;
use switchyard_types::money::pico_to_usd;

/// Between snapshots.
pub const TICK: Duration = Duration::from_secs(1);
/// Keys listed at most in a snapshot (the most spent first).
pub const MAX_KEYS: usize = 100;
/// Samples kept per model: a minute of ticks and the one before it.
const SAMPLES: usize = 61;

/// What the task reads. It holds no `Gateway`: only these.
pub struct Sources {
    pub live: Weak<Live>,
    pub health: Arc<Health>,
    pub keys: Arc<Keys>,
    pub cache: Arc<ResponseCache>,
    pub policies: Option<Arc<switchyard_plugins::Registry>>,
    /// Each model with its provider's name, in the health's (name) order.
    pub models: Vec<(String, String)>,
}

/// Each configured model's name and provider.
pub fn providers_of(config: &Config) -> Vec<(String, String)> {
    config
        .models
        .values()
        .map(|m| (m.id.to_string(), m.provider.to_string()))
        .collect()
}

/// Start the task on the current runtime (none: a tool without one; nothing to watch).
pub fn spawn(sources: Sources) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(run(sources));
    }
}

async fn run(sources: Sources) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut state = State::default();
    loop {
        tick.tick().await;
        let Some(live) = sources.live.upgrade() else {
            return;
        };
        state.tick(&sources, &live, Instant::now(), started);
    }
}

/// What the task remembers between ticks.
#[derive(Default)]
struct State {
    /// Per model (in `Sources::models` order): recent totals, newest last.
    samples: Vec<VecDeque<(Instant, Totals)>>,
    /// Per model: the breaker state seen at the last tick.
    breakers: Vec<Option<&'static str>>,
    policy_reloads: Option<u64>,
}

impl State {
    fn tick(&mut self, s: &Sources, live: &Live, now: Instant, started: Instant) {
        let n = s.models.len();
        self.samples.resize_with(n, VecDeque::new);
        self.breakers.resize(n, None);
        let mut rows = Vec::with_capacity(n);
        for (i, (model, provider)) in s.models.iter().enumerate() {
            let Some(h) = s.health.get(model) else {
                continue;
            };
            let snap = h.snapshot(now);
            let ring = &mut self.samples[i];
            ring.push_back((now, h.totals()));
            while ring.len() > SAMPLES {
                ring.pop_front();
            }
            let state = breaker_label(&snap.breaker);
            if let Some(before) = self.breakers[i]
                && before != state
            {
                live.publish(Event::Breaker(BreakerEvent {
                    ts_ms: now_ms(),
                    model: model.clone(),
                    from: before.to_owned(),
                    to: state.to_owned(),
                    cause: "observed".to_owned(),
                }));
            }
            self.breakers[i] = Some(state);
            if live.watched() {
                rows.push((model, provider, snap, rates(ring), h.clone()));
            }
        }
        self.watch_policies(s, live);
        if live.watched() {
            let snapshot = build(s, live, now, started, rows);
            match serde_json::to_string(&snapshot) {
                Ok(json) => live.set_snapshot(json),
                Err(e) => tracing::warn!(error = %e, "live snapshot not serialisable"),
            }
        }
    }

    /// A reload since the last tick (the folder watcher's or `POST /ai/policies/reload`).
    fn watch_policies(&mut self, s: &Sources, live: &Live) {
        let Some(reg) = &s.policies else {
            return;
        };
        let reloads = reg.reloads();
        let before = self.policy_reloads.replace(reloads);
        if before.is_none_or(|b| b == reloads) {
            return;
        }
        let statuses = reg.statuses();
        let bad: Vec<String> = statuses
            .iter()
            .filter(|p| p.status != "active")
            .map(|p| format!("{} ({})", p.name, p.status))
            .collect();
        let detail = if bad.is_empty() {
            format!("{} policies active", statuses.len())
        } else {
            format!(
                "{} of {} policies not active: {}",
                bad.len(),
                statuses.len(),
                bad.join(", ")
            )
        };
        live.publish(Event::PolicyReload(PolicyEvent {
            ts_ms: now_ms(),
            ok: bad.is_empty(),
            detail,
        }));
    }
}

pub fn breaker_label(b: &BreakerState) -> &'static str {
    match b {
        BreakerState::Closed => "closed",
        BreakerState::Open { .. } => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// A model's rates from its samples: over the last 10 s and the last minute (or what there is
/// of them); `None` before a second sample.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    /// Attempts, failures and output tokens per second, and attempts (for the share), over
    /// the last 10 s.
    requests_per_s: Option<f64>,
    errors_per_s: Option<f64>,
    tokens_per_s: Option<f64>,
    requests_10s: u64,
    failures_10s: u64,
    cost_per_min_usd: Option<f64>,
}

fn rates(ring: &VecDeque<(Instant, Totals)>) -> Rates {
    let Some(&(now, last)) = ring.back() else {
        return Rates::default();
    };
    let since = |window: Duration| {
        ring.iter()
            .find(|(at, _)| now.saturating_duration_since(*at) <= window)
            .filter(|(at, _)| *at < now)
            .map(|&(at, t)| (now.saturating_duration_since(at).as_secs_f64(), t))
    };
    let mut r = Rates::default();
    if let Some((secs, t)) = since(Duration::from_secs(10)) {
        let requests = (last.successes + last.failures).saturating_sub(t.successes + t.failures);
        let failures = last.failures.saturating_sub(t.failures);
        let tokens = last.output_tokens.saturating_sub(t.output_tokens);
        r.requests_per_s = Some(requests as f64 / secs);
        r.errors_per_s = Some(failures as f64 / secs);
        r.tokens_per_s = Some(tokens as f64 / secs);
        r.requests_10s = requests;
        r.failures_10s = failures;
    }
    if let Some((secs, t)) = since(Duration::from_secs(60)) {
        let pico = last.cost_picousd.saturating_sub(t.cost_picousd);
        let pico = i64::try_from(pico).unwrap_or(i64::MAX);
        r.cost_per_min_usd = Some(pico_to_usd(pico) * 60.0 / secs);
    }
    r
}

#[derive(Serialize)]
struct Snapshot<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ms: i64,
    uptime_s: f64,
    totals: TotalsRow,
    models: Vec<ModelRow<'a>>,
    keys: Vec<KeyRow>,
    cache: CacheRow,
}

#[derive(Serialize)]
struct TotalsRow {
    requests_per_s: Option<f64>,
    errors_per_s: Option<f64>,
    cost_per_min_usd: Option<f64>,
    in_flight: u64,
    alerts_active: usize,
}

#[derive(Serialize)]
struct ModelRow<'a> {
    model: &'a str,
    provider: &'a str,
    requests_per_s: Option<f64>,
    success_rate: Option<f64>,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    ttft_p50_ms: Option<f64>,
    ttft_p99_ms: Option<f64>,
    tokens_per_s: Option<f64>,
    cost_per_min_usd: Option<f64>,
    breaker: &'static str,
    forced: Option<&'static str>,
    drained: bool,
    share: Option<f64>,
    in_flight: u32,
}

#[derive(Serialize)]
struct KeyRow {
    id: String,
    name: String,
    spend_usd: f64,
    budget_usd: Option<f64>,
    period: &'static str,
    used: Option<f64>,
}

#[derive(Serialize)]
struct CacheRow {
    hits: u64,
    misses: u64,
    hit_rate: Option<f64>,
}

type Row<'a> = (
    &'a String,
    &'a String,
    HealthSnapshot,
    Rates,
    Arc<switchyard_routing::health::ModelHealth>,
);

fn build<'a>(
    s: &Sources,
    live: &Live,
    now: Instant,
    started: Instant,
    rows: Vec<Row<'a>>,
) -> Snapshot<'a> {
    let sum = |f: fn(&Rates) -> Option<f64>| {
        rows.iter()
            .map(|r| f(&r.3))
            .try_fold(0.0, |acc, v| v.map(|v| acc + v))
    };
    let requests_10s: u64 = rows.iter().map(|r| r.3.requests_10s).sum();
    let totals = TotalsRow {
        requests_per_s: sum(|r| r.requests_per_s),
        errors_per_s: sum(|r| r.errors_per_s),
        cost_per_min_usd: sum(|r| r.cost_per_min_usd),
        in_flight: rows.iter().map(|r| u64::from(r.2.in_flight)).sum(),
        alerts_active: live.alerts_active(),
    };
    let models = rows
        .into_iter()
        .map(|(model, provider, snap, rates, health)| {
            let perf = health.performance(now);
            let success_rate = (rates.requests_10s > 0).then(|| {
                (rates.requests_10s - rates.failures_10s) as f64 / rates.requests_10s as f64
            });
            ModelRow {
                model,
                provider,
                requests_per_s: rates.requests_per_s,
                success_rate,
                latency_p50_ms: perf.latency_ms.p50,
                latency_p99_ms: perf.latency_ms.p99,
                ttft_p50_ms: perf.ttft_ms.p50,
                ttft_p99_ms: perf.ttft_ms.p99,
                tokens_per_s: rates.tokens_per_s,
                cost_per_min_usd: rates.cost_per_min_usd,
                breaker: breaker_label(&snap.breaker),
                forced: snap.forced.map(|f| f.as_str()),
                drained: snap.drained,
                share: (requests_10s > 0).then(|| rates.requests_10s as f64 / requests_10s as f64),
                in_flight: snap.in_flight,
            }
        })
        .collect();
    let stats = s.cache.stats();
    let looked = stats.hits + stats.misses;
    Snapshot {
        kind: "snapshot",
        ts_ms: now_ms(),
        uptime_s: now.saturating_duration_since(started).as_secs_f64(),
        totals,
        models,
        keys: keys(&s.keys),
        cache: CacheRow {
            hits: stats.hits,
            misses: stats.misses,
            hit_rate: (looked > 0).then(|| stats.hits as f64 / looked as f64),
        },
    }
}

/// Unrevoked keys, the most spent first, at most `MAX_KEYS`.
fn keys(keys: &Keys) -> Vec<KeyRow> {
    let now = now_ms();
    let mut rows: Vec<KeyRow> = keys
        .list()
        .iter()
        .filter(|k| !k.is_revoked())
        .map(|k| {
            let u = k.usage(now);
            KeyRow {
                id: k.record.id.clone(),
                name: k.record.name.clone(),
                spend_usd: u.spent_usd,
                budget_usd: u.budget_usd,
                period: u.period,
                used: u.budget_usd.filter(|b| *b > 0.0).map(|b| u.spent_usd / b),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.spend_usd.total_cmp(&a.spend_usd));
    rows.truncate(MAX_KEYS);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64, failures: u64, tokens: u64, cost: u64) -> Totals {
        Totals {
            successes: requests - failures,
            failures,
            output_tokens: tokens,
            cost_picousd: cost,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rates_are_over_the_last_ten_seconds_and_cost_over_the_minute() {
        let t0 = Instant::now();
        let mut ring = VecDeque::new();
        ring.push_back((t0, totals(0, 0, 0, 0)));
        assert!(rates(&ring).requests_per_s.is_none(), "one sample: no rate");
        // 61 ticks: 2 requests a second, 1 failure every second tick, 10 tokens and $1e-6 each.
        for i in 1..=60u64 {
            let t = t0 + Duration::from_secs(i);
            ring.push_back((t, totals(2 * i, i / 2, 20 * i, 2_000_000 * i)));
            while ring.len() > SAMPLES {
                ring.pop_front();
            }
        }
        let r = rates(&ring);
        assert_eq!(r.requests_per_s, Some(2.0));
        assert_eq!(r.errors_per_s, Some(0.5));
        assert_eq!(r.tokens_per_s, Some(20.0));
        assert_eq!((r.requests_10s, r.failures_10s), (20, 5));
        let cost = r.cost_per_min_usd.unwrap();
        assert!((cost - 120.0 * 1e-6).abs() < 1e-12, "{cost}");
    }
}
