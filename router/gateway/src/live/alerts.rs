//! The alert engine: once a tick (`[alerts] interval_ms`, 1 s) it samples the gateway's own
//! signals, feeds them to the detectors of `switchyard_routing::anomaly`, evaluates the rule
//! alerts, and keeps what fires for `GET /ai/alerts`, the live feed and the webhook.
//!
//! Samples, per tick (differences of counters that never reset, so a sample is exactly the
//! tick's traffic; a tick without traffic gives no sample):
//! - per model: mean latency and mean TTFT (ms) of the requests it answered successfully
//!   (`telemetry::ModelSignals`), and the share of its attempts that failed (`Health` totals);
//! - per key: spend over the last minute, USD per minute (the key's budget-period spend);
//! - the cache's hit share of its lookups (hits / (hits + misses)).
//!
//! Rules: a breaker opened (fires when it is open, resolves when it is closed again), a key's
//! budget 80 % / 100 % used, a policy `failed` / `stale`, Redis down (with `[redis]`).
//!
//! Each alert has a stable id, `kind:subject`; it is published as `Event::Alert` when it fires
//! and when it resolves. Nothing here blocks a request: the engine reads atomics and short locks;
//! the webhook is a bounded queue drained by its own task (a full queue drops, and counts).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Alert, Event, Live};
use crate::cache::ResponseCache;
use crate::config::{AlertsConfig, SignalConfig};
use crate::keys::Keys;
use crate::telemetry::{AlertMetrics, ModelSignals, SignalTotals};
use switchyard_routing::anomaly::{Detector, Reading, Transition};
use switchyard_routing::health::{BreakerState, Health, Totals};
use switchyard_types::money::pico_to_usd;

/// The spend-rate window.
const SPEND_WINDOW: Duration = Duration::from_secs(60);
/// First webhook retry after this, doubling, at most `BACKOFF_MAX`.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);

/// What the engine reads: exactly these, never the whole gateway.
pub struct AlertSources {
    pub health: Arc<Health>,
    /// Each configured model's latency sums (`Metrics::model_signals`).
    pub signals: Vec<(String, Arc<ModelSignals>)>,
    pub keys: Arc<Keys>,
    pub cache: Arc<ResponseCache>,
    pub policies: Option<Arc<switchyard_plugins::Registry>>,
    pub shared: Option<Arc<crate::shared::Shared>>,
}

/// `GET /ai/alerts`.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsView {
    /// Firing now, oldest first.
    pub active: Vec<Alert>,
    /// The last `[alerts] recent` transitions (fired and resolved), newest first.
    pub recent: Vec<Alert>,
}

#[derive(Default)]
struct Book {
    active: BTreeMap<String, Alert>,
    recent: VecDeque<Alert>,
}

struct ModelTrack {
    latency: Detector,
    ttft: Detector,
    errors: Detector,
    signals: Option<SignalTotals>,
    totals: Option<Totals>,
}

struct KeyTrack {
    detector: Detector,
    /// (when, spend of the period in picodollars), the last `SPEND_WINDOW` of ticks.
    spent: VecDeque<(Instant, i64)>,
}

struct Engine {
    models: HashMap<String, ModelTrack>,
    keys: HashMap<String, KeyTrack>,
    cache: Option<(u64, u64)>,
    cache_detector: Detector,
}

/// The engine's state and what it publishes to. Shared as `Arc<Alerts>` in `Gateway::alerts`.
pub struct Alerts {
    config: AlertsConfig,
    sources: AlertSources,
    live: Arc<Live>,
    metrics: AlertMetrics,
    book: Mutex<Book>,
    engine: Mutex<Engine>,
    webhook: Option<mpsc::Sender<Arc<Alert>>>,
    /// Taken by `start`, which spawns the delivery task.
    webhook_rx: Mutex<Option<mpsc::Receiver<Arc<Alert>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn detector(signal: &SignalConfig) -> Detector {
    Detector::new(signal.detector)
}

impl Alerts {
    pub fn new(
        config: AlertsConfig,
        sources: AlertSources,
        live: Arc<Live>,
        metrics: AlertMetrics,
    ) -> Alerts {
        let (webhook, rx) = match config.webhook_url {
            Some(_) => {
                let (tx, rx) = mpsc::channel(config.webhook_queue.max(1));
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let engine = Engine {
            models: HashMap::new(),
            keys: HashMap::new(),
            cache: None,
            cache_detector: detector(&config.cache_hit_rate),
        };
        Alerts {
            config,
            sources,
            live,
            metrics,
            book: Mutex::new(Book::default()),
            engine: Mutex::new(engine),
            webhook,
            webhook_rx: Mutex::new(rx),
        }
    }

    /// Start the ticker and the webhook's delivery task (when a tokio runtime is running; a
    /// gateway built outside one, as some tools do, has no engine). Both end when the `Alerts`
    /// is dropped.
    pub fn start(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.config.enabled {
            return;
        }
        if let (Some(rx), Some(url)) = (lock(&self.webhook_rx).take(), &self.config.webhook_url) {
            let delivery = Delivery {
                url: url.expose().to_owned(),
                timeout: self.config.webhook_timeout,
                retries: self.config.webhook_retries,
                metrics: self.metrics.clone(),
            };
            runtime.spawn(delivery.run(rx));
        }
        let weak = Arc::downgrade(self);
        let every = self.config.interval;
        runtime.spawn(async move {
            // The first sample one interval after the start: there is nothing to compare before.
            let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                let Some(alerts) = weak.upgrade() else {
                    return;
                };
                alerts.tick(Instant::now(), switchyard_types::clock::now_ms());
            }
        });
    }

    /// Active and recent alerts.
    pub fn view(&self) -> AlertsView {
        let book = lock(&self.book);
        let mut active: Vec<Alert> = book.active.values().cloned().collect();
        active.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        AlertsView {
            active,
            recent: book.recent.iter().rev().cloned().collect(),
        }
    }

    /// How many alerts are firing now (the live snapshot's `alerts_active`).
    pub fn active_count(&self) -> usize {
        lock(&self.book).active.len()
    }

    /// One sample of every signal and one evaluation of every rule, as of `now` (`now_ms` is the
    /// wall clock for the alerts' timestamps and the keys' budget periods).
    pub fn tick(&self, now: Instant, now_ms: i64) {
        let mut engine = lock(&self.engine);
        self.models(&mut engine, now, now_ms);
        self.keys(&mut engine, now, now_ms);
        self.cache(&mut engine, now_ms);
        self.policies(now_ms);
        self.redis(now_ms);
    }

    fn models(&self, engine: &mut Engine, now: Instant, now_ms: i64) {
        let signals: HashMap<&str, &Arc<ModelSignals>> = self
            .sources
            .signals
            .iter()
            .map(|(m, s)| (m.as_str(), s))
            .collect();
        for (id, health) in self.sources.health.iter() {
            let model = id.as_str();
            if self.config.rules.breaker_open {
                match health.snapshot(now).breaker {
                    BreakerState::Open { retry_in_ms, .. } => self.fire(
                        "breaker_open",
                        model,
                        "critical",
                        format!("{model}: circuit breaker open (retry in {retry_in_ms} ms)"),
                        None,
                        now_ms,
                    ),
                    BreakerState::Closed => self.resolve("breaker_open", model, now_ms),
                    BreakerState::HalfOpen => {}
                }
            }
            let track = engine
                .models
                .entry(model.to_owned())
                .or_insert_with(|| ModelTrack {
                    latency: detector(&self.config.latency),
                    ttft: detector(&self.config.ttft),
                    errors: detector(&self.config.error_rate),
                    signals: None,
                    totals: None,
                });
            let totals = health.totals();
            if let Some(prev) = track.totals.replace(totals) {
                let ok = totals.successes.saturating_sub(prev.successes);
                let failed = totals.failures.saturating_sub(prev.failures);
                if ok + failed > 0 && self.config.error_rate.enabled {
                    let rate = failed as f64 / (ok + failed) as f64;
                    let t = track.errors.observe(rate);
                    self.detected(t, "error_rate", model, "critical", now_ms);
                }
            }
            let Some(s) = signals.get(model).map(|s| s.totals()) else {
                continue;
            };
            if let Some(prev) = track.signals.replace(s) {
                let n = s.count.saturating_sub(prev.count);
                if n > 0 && self.config.latency.enabled {
                    let mean = s.latency_us.saturating_sub(prev.latency_us) as f64 / n as f64;
                    let t = track.latency.observe(mean / 1000.0);
                    self.detected(t, "latency", model, "warning", now_ms);
                }
                let n = s.ttft_count.saturating_sub(prev.ttft_count);
                if n > 0 && self.config.ttft.enabled {
                    let mean = s.ttft_us.saturating_sub(prev.ttft_us) as f64 / n as f64;
                    let t = track.ttft.observe(mean / 1000.0);
                    self.detected(t, "ttft", model, "warning", now_ms);
                }
            }
        }
    }

    fn keys(&self, engine: &mut Engine, now: Instant, now_ms: i64) {
        let keys = self.sources.keys.list();
        let live: std::collections::HashSet<&str> = keys
            .iter()
            .filter(|k| !k.is_revoked())
            .map(|k| k.id())
            .collect();
        engine.keys.retain(|id, _| live.contains(id.as_str()));
        for key in keys.iter() {
            let id = key.id();
            if key.is_revoked() {
                for kind in ["budget_80", "budget_100", "spend_rate"] {
                    self.resolve(kind, id, now_ms);
                }
                continue;
            }
            let usage = key.usage(now_ms);
            let name = &key.record.name;
            if self.config.rules.budget
                && let Some(budget) = key.record.budget_picousd.filter(|b| *b > 0)
            {
                let used = usage.spent_picousd as f64 / budget as f64;
                for (kind, share, severity) in [
                    ("budget_80", 0.8, "warning"),
                    ("budget_100", 1.0, "critical"),
                ] {
                    if used >= share {
                        let message = format!(
                            "key {name} ({id}): {:.0} % of its {} budget used (${:.4} of ${:.4})",
                            used * 100.0,
                            usage.period,
                            usage.spent_usd,
                            pico_to_usd(budget),
                        );
                        self.fire(kind, id, severity, message, None, now_ms);
                    } else {
                        self.resolve(kind, id, now_ms);
                    }
                }
            }
            if !self.config.spend_rate.enabled {
                continue;
            }
            let track = engine
                .keys
                .entry(id.to_owned())
                .or_insert_with(|| KeyTrack {
                    detector: detector(&self.config.spend_rate),
                    spent: VecDeque::new(),
                });
            if track
                .spent
                .back()
                .is_some_and(|(_, s)| *s > usage.spent_picousd)
            {
                // A new budget period began: the spend went back to 0.
                track.spent.clear();
            }
            track.spent.push_back((now, usage.spent_picousd));
            while track
                .spent
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > SPEND_WINDOW)
            {
                track.spent.pop_front();
            }
            if let (Some((t0, s0)), Some((t1, s1))) = (track.spent.front(), track.spent.back()) {
                let minutes = t1.saturating_duration_since(*t0).as_secs_f64() / 60.0;
                if minutes > 0.0 {
                    let rate = pico_to_usd(s1 - s0) / minutes;
                    let t = track.detector.observe(rate);
                    self.detected(t, "spend_rate", id, "warning", now_ms);
                }
            }
        }
    }

    fn cache(&self, engine: &mut Engine, now_ms: i64) {
        if !self.config.cache_hit_rate.enabled {
            return;
        }
        let stats = self.sources.cache.stats();
        let now = (stats.hits, stats.misses);
        if let Some((hits, misses)) = engine.cache.replace(now) {
            let h = now.0.saturating_sub(hits);
            let lookups = h + now.1.saturating_sub(misses);
            if lookups > 0 {
                let t = engine.cache_detector.observe(h as f64 / lookups as f64);
                self.detected(t, "cache_hit_rate", "cache", "warning", now_ms);
            }
        }
    }

    fn policies(&self, now_ms: i64) {
        let Some(registry) = self.sources.policies.as_ref() else {
            return;
        };
        if !self.config.rules.policy {
            return;
        }
        for p in registry.statuses() {
            for (kind, status, severity, what) in [
                (
                    "policy_failed",
                    "failed",
                    "critical",
                    "failed to load and serves no version",
                ),
                (
                    "policy_stale",
                    "stale",
                    "warning",
                    "failed to reload; an older version serves",
                ),
            ] {
                if p.status == status {
                    // The load error stays in GET /ai/policies, redacted there for keys.
                    let message = format!("policy {}: {what} (see GET /ai/policies)", p.name);
                    self.fire(kind, &p.name, severity, message, None, now_ms);
                } else {
                    self.resolve(kind, &p.name, now_ms);
                }
            }
        }
    }

    fn redis(&self, now_ms: i64) {
        let Some(shared) = self.sources.shared.as_ref() else {
            return;
        };
        if !self.config.rules.redis {
            return;
        }
        if shared.is_up() {
            self.resolve("redis_degraded", "redis", now_ms);
        } else {
            let message = "Redis (shared budgets and rate limits) is not answering; limits \
                           follow [redis] on_failure"
                .to_owned();
            self.fire("redis_degraded", "redis", "critical", message, None, now_ms);
        }
    }

    /// A detector's transition as an alert.
    fn detected(
        &self,
        transition: Option<Transition>,
        kind: &'static str,
        subject: &str,
        severity: &'static str,
        now_ms: i64,
    ) {
        match transition {
            Some(Transition::Fired(r)) => {
                let message = describe(kind, subject, &r);
                self.fire(kind, subject, severity, message, Some(r), now_ms);
            }
            Some(Transition::Resolved(_)) => self.resolve(kind, subject, now_ms),
            None => {}
        }
    }

    /// Fire `kind` on `subject` unless it is firing already.
    fn fire(
        &self,
        kind: &'static str,
        subject: &str,
        severity: &'static str,
        message: String,
        reading: Option<Reading>,
        now_ms: i64,
    ) {
        let id = format!("{kind}:{subject}");
        let alert = {
            let mut book = lock(&self.book);
            if book.active.contains_key(&id) {
                return;
            }
            let alert = Alert {
                id: id.clone(),
                kind: kind.to_owned(),
                subject: subject.to_owned(),
                severity: severity.to_owned(),
                state: "firing".to_owned(),
                message,
                value: reading.map(|r| r.value),
                baseline: reading.map(|r| r.baseline),
                threshold: reading.map(|r| r.threshold),
                started_ms: now_ms,
                resolved_ms: None,
            };
            book.active.insert(id, alert.clone());
            self.remember(&mut book, alert.clone());
            self.metrics.set_active(book.active.len());
            alert
        };
        tracing::warn!(id = %alert.id, message = %alert.message, "alert firing");
        self.metrics.fired(kind);
        self.announce(alert);
    }

    /// Resolve `kind` on `subject` if it is firing.
    fn resolve(&self, kind: &'static str, subject: &str, now_ms: i64) {
        let id = format!("{kind}:{subject}");
        let alert = {
            let mut book = lock(&self.book);
            let Some(mut alert) = book.active.remove(&id) else {
                return;
            };
            alert.state = "resolved".to_owned();
            alert.resolved_ms = Some(now_ms);
            self.remember(&mut book, alert.clone());
            self.metrics.set_active(book.active.len());
            alert
        };
        tracing::info!(id = %alert.id, "alert resolved");
        self.announce(alert);
    }

    fn remember(&self, book: &mut Book, alert: Alert) {
        book.recent.push_back(alert);
        while book.recent.len() > self.config.recent {
            book.recent.pop_front();
        }
    }

    /// To the live feed and the webhook queue; neither waits.
    fn announce(&self, alert: Alert) {
        if let Some(tx) = &self.webhook {
            let alert = Arc::new(alert.clone());
            if tx.try_send(alert).is_err() {
                self.metrics.webhook("dropped");
            }
        }
        self.live.publish(Event::Alert(alert));
    }
}

/// "gpt-4o-mini: latency 850 ms, usual 120 ms, threshold 400 ms".
fn describe(kind: &str, subject: &str, r: &Reading) -> String {
    let (what, unit, scale) = match kind {
        "latency" => ("mean latency", " ms", 1.0),
        "ttft" => ("mean time to first token", " ms", 1.0),
        "error_rate" => ("error rate", " %", 100.0),
        "cache_hit_rate" => ("cache hit rate", " %", 100.0),
        "spend_rate" => ("spend rate", " USD/min", 1.0),
        _ => (kind, "", 1.0),
    };
    let f = |x: f64| {
        let x = x * scale;
        if x.abs() >= 10.0 {
            format!("{x:.0}{unit}")
        } else {
            format!("{x:.3}{unit}")
        }
    };
    format!(
        "{subject}: {what} {} (usual {}, threshold {})",
        f(r.value),
        f(r.baseline),
        f(r.threshold)
    )
}

/// The webhook's delivery task: one alert at a time, each with its retries; a receiver that
/// hangs costs at most `timeout × (retries + 1)` plus the backoff per alert, and meanwhile the
/// queue fills and drops (counted): the engine and the feed never wait for it.
struct Delivery {
    url: String,
    timeout: Duration,
    retries: u32,
    metrics: AlertMetrics,
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Alert>>) {
        // The providers' client: no redirects followed, TCP_NODELAY, a connect timeout.
        let client = match switchyard_providers::http_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alert webhook: no HTTP client");
                return;
            }
        };
        while let Some(alert) = rx.recv().await {
            let Ok(body) = serde_json::to_vec(&*alert) else {
                continue;
            };
            let mut delivered = false;
            for attempt in 0..=self.retries {
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                let sent = client
                    .post(&self.url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .timeout(self.timeout)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        delivered = true;
                        break;
                    }
                    Ok(r) => {
                        tracing::debug!(status = %r.status(), attempt, "alert webhook refused")
                    }
                    Err(e) => tracing::debug!(error = %e, attempt, "alert webhook failed"),
                }
            }
            if delivered {
                self.metrics.webhook("sent");
            } else {
                tracing::warn!(id = %alert.id, "alert webhook: not delivered after its retries");
                self.metrics.webhook("failed");
            }
        }
    }
}

/// 250 ms, 500 ms, 1 s, … at most 4 s before retry `attempt` (1-based).
fn backoff(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_backoff_doubles_to_its_cap() {
        let ms: Vec<u128> = (1..=6).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 4000]);
    }

    #[test]
    fn alerts_describe_reads_well() {
        let r = Reading {
            value: 850.0,
            baseline: 120.0,
            threshold: 400.0,
        };
        assert_eq!(
            describe("latency", "m", &r),
            "m: mean latency 850 ms (usual 120 ms, threshold 400 ms)"
        );
        let r = Reading {
            value: 0.5,
            baseline: 0.01,
            threshold: 0.21,
        };
        assert_eq!(
            describe("error_rate", "m", &r),
            "m: error rate 50 % (usual 1.000 %, threshold 21 %)"
        );
    }
}
