//! `[alerts]`: the alert engine (`live/alerts.rs`) — how often it samples, each signal's
//! detector (`[alerts.latency]`, `[alerts.ttft]`, `[alerts.error_rate]`, `[alerts.spend_rate]`,
//! `[alerts.cache_hit_rate]`), the rule alerts (`[alerts.rules]`) and the optional webhook.
//!
//! ```toml
//! [alerts]
//! webhook_url = "https://hooks.example/switchyard"   # optional; POSTs each alert's JSON
//! webhook_timeout_ms = 2000
//! webhook_retries = 3
//! [alerts.latency]
//! k = 4
//! warmup = 30
//! min_delta = 100      # ms
//! consecutive = 3
//! [alerts.rules]
//! budget = false
//! ```

use std::time::Duration;

use serde::Deserialize;
use switchyard_routing::anomaly::{DetectorConfig, Direction};
use switchyard_types::ids::Secret;

use super::Errors;

/// One signal's detector settings, and whether it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalConfig {
    pub enabled: bool,
    pub detector: DetectorConfig,
}

/// Which rule alerts run (`[alerts.rules]`, all on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// A model's breaker opened (`breaker_open`).
    pub breaker_open: bool,
    /// A key's budget 80 % and 100 % used (`budget_80`, `budget_100`).
    pub budget: bool,
    /// A policy failed to load (`policy_failed`) or an older version serves (`policy_stale`).
    pub policy: bool,
    /// The shared counters (Redis) are down (`redis_degraded`), with `[redis]`.
    pub redis: bool,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            breaker_open: true,
            budget: true,
            policy: true,
            redis: true,
        }
    }
}

/// The validated `[alerts]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Whether the engine runs at all (default true).
    pub enabled: bool,
    /// Time between samples (default 1 s).
    pub interval: Duration,
    /// Alerts kept for `GET /ai/alerts` `recent` (default 200).
    pub recent: usize,
    /// Mean latency (ms) of the tick's successful requests per model.
    pub latency: SignalConfig,
    /// Mean time to first token (ms) per model.
    pub ttft: SignalConfig,
    /// Share of the tick's attempts per model that failed.
    pub error_rate: SignalConfig,
    /// Spend per key over the last minute, USD per minute.
    pub spend_rate: SignalConfig,
    /// Share of the tick's cache lookups that hit (alerts when it falls).
    pub cache_hit_rate: SignalConfig,
    pub rules: AlertRules,
    /// Where each alert's JSON is POSTed; a secret (it often holds a token).
    pub webhook_url: Option<Secret>,
    pub webhook_timeout: Duration,
    /// Retries after a failed delivery, with exponential backoff (default 3).
    pub webhook_retries: u32,
    /// Alerts waiting for the webhook; beyond it they are dropped (and counted).
    pub webhook_queue: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        let signal = |direction, warmup, min_delta, consecutive| SignalConfig {
            enabled: true,
            detector: DetectorConfig {
                warmup,
                min_delta,
                consecutive,
                ..DetectorConfig::new(direction)
            },
        };
        AlertsConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            recent: 200,
            latency: signal(Direction::High, 30, 100.0, 3),
            ttft: signal(Direction::High, 30, 100.0, 3),
            // A per-second share of a few requests is coarse: 5 in a row, and at least 20 points.
            error_rate: signal(Direction::High, 30, 0.2, 5),
            // A one-minute sum needs its first minute to fill before it is a baseline.
            spend_rate: signal(Direction::High, 120, 0.05, 3),
            cache_hit_rate: signal(Direction::Low, 30, 0.2, 5),
            rules: AlertRules::default(),
            webhook_url: None,
            webhook_timeout: Duration::from_secs(2),
            webhook_retries: 3,
            webhook_queue: 64,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    enabled: Option<bool>,
    interval_ms: Option<u64>,
    recent: Option<usize>,
    latency: Option<RawSignal>,
    ttft: Option<RawSignal>,
    error_rate: Option<RawSignal>,
    spend_rate: Option<RawSignal>,
    cache_hit_rate: Option<RawSignal>,
    #[serde(default)]
    rules: AlertRules,
    webhook_url: Option<Secret>,
    webhook_timeout_ms: Option<u64>,
    webhook_retries: Option<u32>,
    webhook_queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    enabled: Option<bool>,
    alpha: Option<f64>,
    k: Option<f64>,
    warmup: Option<u32>,
    min_delta: Option<f64>,
    consecutive: Option<u32>,
}

impl RawSignal {
    fn apply(self, base: SignalConfig, path: &str, errors: &mut Errors) -> SignalConfig {
        let d = base.detector;
        let detector = DetectorConfig {
            alpha: self.alpha.unwrap_or(d.alpha),
            k: self.k.unwrap_or(d.k),
            warmup: self.warmup.unwrap_or(d.warmup),
            min_delta: self.min_delta.unwrap_or(d.min_delta),
            consecutive: self.consecutive.unwrap_or(d.consecutive),
            direction: d.direction,
        };
        for (field, message) in detector.validate() {
            errors.push(format!("{path}.{field}"), message);
        }
        SignalConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            detector,
        }
    }
}

/// `[alerts]` parsed and checked; errors are recorded at their paths (`alerts.latency.k`).
pub(super) fn load(value: Option<toml::Value>, errors: &mut Errors) -> AlertsConfig {
    let defaults = AlertsConfig::default();
    let Some(value) = value else {
        return defaults;
    };
    let Some(raw) = errors.parse::<RawAlerts>(value, "alerts") else {
        return defaults;
    };
    let mut range = |path: &str, v: Option<u64>, lo: u64, hi: u64, default: u64| match v {
        Some(n) if !(lo..=hi).contains(&n) => {
            errors.push(path, format!("must be between {lo} and {hi}"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let interval = range("alerts.interval_ms", raw.interval_ms, 100, 60_000, 1000);
    let recent = range(
        "alerts.recent",
        raw.recent.map(|n| n as u64),
        1,
        10_000,
        200,
    );
    let timeout = range(
        "alerts.webhook_timeout_ms",
        raw.webhook_timeout_ms,
        1,
        60_000,
        ms(defaults.webhook_timeout),
    );
    let retries = range(
        "alerts.webhook_retries",
        raw.webhook_retries.map(u64::from),
        0,
        10,
        3,
    );
    let queue = range(
        "alerts.webhook_queue",
        raw.webhook_queue.map(|n| n as u64),
        1,
        10_000,
        64,
    );
    if let Some(url) = &raw.webhook_url {
        let u = url.expose();
        // Never echo the URL: it may hold a token.
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            errors.push(
                "alerts.webhook_url",
                "must be http://HOST… or https://HOST…",
            );
        }
    }
    let mut signal = |raw: Option<RawSignal>, base: SignalConfig, name: &str| {
        raw.unwrap_or_default()
            .apply(base, &format!("alerts.{name}"), errors)
    };
    AlertsConfig {
        enabled: raw.enabled.unwrap_or(true),
        interval: Duration::from_millis(interval),
        recent: usize::try_from(recent).unwrap_or(200),
        latency: signal(raw.latency, defaults.latency, "latency"),
        ttft: signal(raw.ttft, defaults.ttft, "ttft"),
        error_rate: signal(raw.error_rate, defaults.error_rate, "error_rate"),
        spend_rate: signal(raw.spend_rate, defaults.spend_rate, "spend_rate"),
        cache_hit_rate: signal(
            raw.cache_hit_rate,
            defaults.cache_hit_rate,
            "cache_hit_rate",
        ),
        rules: raw.rules,
        webhook_url: raw.webhook_url,
        webhook_timeout: Duration::from_millis(timeout),
        webhook_retries: u32::try_from(retries).unwrap_or(3),
        webhook_queue: usize::try_from(queue).unwrap_or(64),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Vars, load_str};

    const BASE: &str = "[providers.openai]\nkind = \"openai\"\napi_key = \"k\"\n\
                        [models.\"gpt-4o-mini\"]\nprovider = \"openai\"\n";

    fn errors(extra: &str) -> Vec<String> {
        match load_str(&format!("{BASE}{extra}"), &Vars::only(&[])) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn alerts_defaults_and_overrides() {
        let cfg = load_str(BASE, &Vars::only(&[])).unwrap();
        let a = &cfg.alerts;
        assert!(a.enabled && a.rules.budget && a.webhook_url.is_none());
        assert_eq!(
            (a.latency.detector.k, a.latency.detector.consecutive),
            (4.0, 3)
        );
        assert_eq!(a.cache_hit_rate.detector.direction, super::Direction::Low);
        let text = format!(
            "{BASE}[alerts]\ninterval_ms = 250\nwebhook_url = \"http://127.0.0.1:9/hook\"\n\
             [alerts.latency]\nk = 6\nmin_delta = 50\n[alerts.ttft]\nenabled = false\n\
             [alerts.rules]\nbudget = false\n"
        );
        let cfg = load_str(&text, &Vars::only(&[])).unwrap();
        let a = &cfg.alerts;
        assert_eq!(a.interval.as_millis(), 250);
        assert_eq!(
            (a.latency.detector.k, a.latency.detector.min_delta),
            (6.0, 50.0)
        );
        assert_eq!(a.latency.detector.warmup, 30);
        assert!(!a.ttft.enabled && !a.rules.budget && a.rules.breaker_open);
        assert!(a.webhook_url.is_some());
    }

    #[test]
    fn alerts_bad_values_are_errors_at_their_paths() {
        let got = errors(
            "[alerts]\ninterval_ms = 5\nwebhook_retries = 99\nwebhook_url = \"ftp://x\"\n\
             [alerts.latency]\nk = -1\nconsecutive = 0\n[alerts.cache_hit_rate]\nwarmup = 1\n",
        );
        for path in [
            "alerts.interval_ms",
            "alerts.webhook_retries",
            "alerts.webhook_url",
            "alerts.latency.k",
            "alerts.latency.consecutive",
            "alerts.cache_hit_rate.warmup",
        ] {
            assert!(got.iter().any(|p| p == path), "{path} missing in {got:?}");
        }
        let unknown = errors("[alerts.latency]\nkk = 1\n");
        assert!(
            unknown.iter().all(|p| p.starts_with("alerts.latency")),
            "{unknown:?}"
        );
        assert_eq!(unknown.len(), 1);
        let unknown = errors("[alerts.rules]\nbreaker = true\n");
        assert!(
            unknown.iter().all(|p| p.starts_with("alerts.rules")),
            "{unknown:?}"
        );
        assert_eq!(unknown.len(), 1);
        assert_eq!(
            errors("[alerts]\nwebhook_url = \"https://\"\n"),
            ["alerts.webhook_url"]
        );
    }
}
