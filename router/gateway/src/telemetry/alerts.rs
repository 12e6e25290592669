//! The alert families (`live/alerts.rs`): alerts fired by kind, alerts active now, webhook
//! deliveries by result; and each model's latency sums since start, which the alert engine
//! turns into per-tick means. Kinds and results are static strings, so every label is bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every alert kind: detectors, then rules.
pub const KINDS: [&str; 11] = [
    "latency",
    "ttft",
    "error_rate",
    "spend_rate",
    "cache_hit_rate",
    "breaker_open",
    "budget_80",
    "budget_100",
    "policy_failed",
    "policy_stale",
    "redis_degraded",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `switchyard_alerts_total{kind}`, `switchyard_alerts_active` and
/// `switchyard_alert_webhooks_total{result}` (`sent`, `failed`, `dropped`). Clones share the
/// same counters.
#[derive(Debug, Clone, Default)]
pub struct AlertMetrics {
    fired: Family<KindLabel, Counter>,
    active: Gauge,
    webhooks: Family<ResultLabel, Counter>,
}

impl AlertMetrics {
    pub(super) fn register(registry: &mut Registry) -> AlertMetrics {
        let m = AlertMetrics::default();
        // Every series exists from startup, at 0: a dashboard or a rule finds its family.
        for kind in KINDS {
            drop(m.fired.get_or_create(&KindLabel { kind }));
        }
        for result in ["sent", "failed", "dropped"] {
            drop(m.webhooks.get_or_create(&ResultLabel { result }));
        }
        registry.register(
            "switchyard_alerts",
            "Alerts fired, by kind (latency, ttft, error_rate, spend_rate, cache_hit_rate, \
             breaker_open, budget_80, budget_100, policy_failed, policy_stale, redis_degraded)",
            m.fired.clone(),
        );
        registry.register(
            "switchyard_alerts_active",
            "Alerts firing now (GET /ai/alerts `active`)",
            m.active.clone(),
        );
        registry.register(
            "switchyard_alert_webhooks",
            "Alert webhook deliveries by result: sent, failed (after its retries), dropped (queue full)",
            m.webhooks.clone(),
        );
        m
    }

    pub fn fired(&self, kind: &'static str) {
        self.fired.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn set_active(&self, n: usize) {
        self.active.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `sent`, `failed` or `dropped`.
    pub fn webhook(&self, result: &'static str) {
        self.webhooks.get_or_create(&ResultLabel { result }).inc();
    }
}

/// One model's successful requests since start: how many, and their summed latency and time to
/// first token, in microseconds. Never reset; the alert engine takes differences.
#[derive(Debug, Default)]
pub struct ModelSignals {
    count: AtomicU64,
    latency_us: AtomicU64,
    ttft_count: AtomicU64,
    ttft_us: AtomicU64,
}

/// A `ModelSignals` read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalTotals {
    pub count: u64,
    pub latency_us: u64,
    pub ttft_count: u64,
    pub ttft_us: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ModelSignals {
    pub(super) fn record(&self, latency: Duration, ttft: Option<Duration>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.latency_us
            .fetch_add(micros(latency), Ordering::Relaxed);
        if let Some(t) = ttft {
            self.ttft_count.fetch_add(1, Ordering::Relaxed);
            self.ttft_us.fetch_add(micros(t), Ordering::Relaxed);
        }
    }

    pub fn totals(&self) -> SignalTotals {
        SignalTotals {
            count: self.count.load(Ordering::Relaxed),
            latency_us: self.latency_us.load(Ordering::Relaxed),
            ttft_count: self.ttft_count.load(Ordering::Relaxed),
            ttft_us: self.ttft_us.load(Ordering::Relaxed),
        }
    }
}
