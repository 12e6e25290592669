//! Logging setup: human-readable text or one JSON object per line (`--log-format json`).
//! Filter with `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is not an error worth reporting.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub mod metrics;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use metrics::{
    CollectorType, CounterVec, FloatCounterVec, Histogram, HistogramVec, LATENCY_SECONDS_BUCKETS,
    MetricError, OVERHEAD_SECONDS_BUCKETS, Registry,
};

use crate::exchange::Stage;
use crate::routing::health::BreakerState;
use crate::state::Gateway;
use crate::store::RequestRecord;

/// The gateway's metrics (`GET /metrics`). Counters and histograms are updated on the request
/// path (lock-free once a label set has been seen); state that lives elsewhere (cache, breakers,
/// policies, the log writer) is read at scrape time.
pub struct Metrics {
    pub registry: Registry,
    requests: CounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    tokens: CounterVec,
    cost: FloatCounterVec,
    overhead: [Histogram; 6],
    gateway: Arc<OnceLock<Weak<Gateway>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricError> {
        let registry = Registry::new();
        let requests = registry.counter_vec(
            "switchyard_requests_total",
            "Requests answered, by endpoint, route, model that answered, HTTP status and cache outcome.",
            &["endpoint", "route", "model", "status", "cache"],
        )?;
        let duration = registry.histogram_vec(
            "switchyard_request_duration_seconds",
            "Time from arrival to the end of the answer (the whole stream when streaming).",
            &["route", "model"],
            LATENCY_SECONDS_BUCKETS,
        )?;
        let ttft = registry.histogram_vec(
            "switchyard_ttft_seconds",
            "Time to the first token (to the answer when not streaming).",
            &["model"],
            LATENCY_SECONDS_BUCKETS,
        )?;
        let tokens = registry.counter_vec(
            "switchyard_tokens_total",
            "Tokens by model and direction (input, output, cached_input, reasoning).",
            &["model", "direction"],
        )?;
        let cost = registry.float_counter_vec(
            "switchyard_cost_usd_total",
            "Spend by model, USD, from provider usage (estimated when a stream sent none).",
            &["model"],
        )?;
        let overhead_vec = registry.histogram_vec(
            "switchyard_overhead_seconds",
            "The gateway's own time per request, by pipeline stage.",
            &["stage"],
            OVERHEAD_SECONDS_BUCKETS,
        )?;
        let overhead = Stage::ALL.map(|s| overhead_vec.with(&[s.as_str()]));
        let gateway: Arc<OnceLock<Weak<Gateway>>> = Arc::default();
        register_collectors(&registry, &gateway)?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            ttft,
            tokens,
            cost,
            overhead,
            gateway,
        })
    }

    /// Let the scrape-time collectors read the gateway's state.
    pub fn bind(&self, gw: &Arc<Gateway>) {
        let _ = self.gateway.set(Arc::downgrade(gw));
    }

    /// One finished request.
    pub fn request(&self, row: &RequestRecord, latency: Duration, ttft: Option<Duration>) {
        let model = row.model.as_deref().unwrap_or("");
        let status = row.status.to_string();
        self.requests
            .with(&[&row.endpoint, &row.route, model, &status, &row.cache])
            .inc();
        self.duration
            .with(&[&row.route, model])
            .observe_duration(latency);
        if let Some(t) = ttft
            && !model.is_empty()
        {
            self.ttft.with(&[model]).observe_duration(t);
        }
        if !model.is_empty() {
            for (direction, n) in [
                ("input", row.prompt_tokens),
                ("output", row.completion_tokens),
                ("cached_input", row.cached_tokens),
                ("reasoning", row.reasoning_tokens),
            ] {
                if n > 0 {
                    self.tokens.with(&[model, direction]).inc_by(u64::from(n));
                }
            }
            if row.cost_picousd > 0 {
                self.cost
                    .with(&[model])
                    .inc_by(row.cost_picousd as f64 / 1e12);
            }
        }
    }

    pub fn stage(&self, stage: Stage, d: Duration) {
        self.overhead[stage as usize].observe_duration(d);
    }

    pub fn render(&self) -> String {
        self.registry.render()
    }
}

/// Families read from the gateway at scrape time.
fn register_collectors(
    registry: &Registry,
    gateway: &Arc<OnceLock<Weak<Gateway>>>,
) -> Result<(), MetricError> {
    type Read = fn(&Gateway, &mut metrics::Encoder<'_>);
    let families: [(&str, &str, CollectorType, &[&str], Read); 12] = [
        (
            "switchyard_cache_hits_total",
            "Requests answered from the cache (including coalesced ones).",
            CollectorType::Counter,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().hits as f64);
            },
        ),
        (
            "switchyard_cache_misses_total",
            "Cacheable requests not found in the cache.",
            CollectorType::Counter,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().misses as f64);
            },
        ),
        (
            "switchyard_cache_bypass_total",
            "Requests the cache took no part in (not deterministic, or turned off).",
            CollectorType::Counter,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().bypasses as f64);
            },
        ),
        (
            "switchyard_cache_evictions_total",
            "Entries evicted to stay within cache.max_bytes.",
            CollectorType::Counter,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().evictions as f64);
            },
        ),
        (
            "switchyard_cache_coalesced_total",
            "Requests that waited for an identical request in flight and got its answer.",
            CollectorType::Counter,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().coalesced as f64);
            },
        ),
        (
            "switchyard_cache_entries",
            "Answers in the cache.",
            CollectorType::Gauge,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().entries as f64);
            },
        ),
        (
            "switchyard_cache_bytes",
            "Memory held by cached answers (their weight), bytes.",
            CollectorType::Gauge,
            &[],
            |gw, e| {
                e.sample(&[], gw.cache.stats().bytes as f64);
            },
        ),
        (
            "switchyard_breaker_state",
            "Per-model circuit breaker: 0 closed, 1 half-open, 2 open.",
            CollectorType::Gauge,
            &["model"],
            |gw, e| {
                let now = tokio::time::Instant::now();
                for (id, h) in gw.health.iter() {
                    let v = match h.snapshot(now).breaker {
                        BreakerState::Closed => 0.0,
                        BreakerState::Open { .. } => 2.0,
                        _ => 1.0,
                    };
                    e.sample(&[id.as_str()], v);
                }
            },
        ),
        (
            "switchyard_policy_evaluations_total",
            "WASM policy evaluations by policy and result (ok, error, skipped by its breaker).",
            CollectorType::Counter,
            &["policy", "result"],
            |gw, e| {
                let Some(reg) = &gw.policies else { return };
                for p in reg.statuses() {
                    if let Some(s) = p.stats {
                        let ok = s.evaluations.saturating_sub(s.errors);
                        e.sample(&[&p.name, "ok"], ok as f64);
                        e.sample(&[&p.name, "error"], s.errors as f64);
                        e.sample(&[&p.name, "skipped"], s.skipped as f64);
                    }
                }
            },
        ),
        (
            "switchyard_log_rows_total",
            "Request log rows by fate: written to the store, dropped (queue full), failed (store error).",
            CollectorType::Counter,
            &["result"],
            |gw, e| {
                let Some(w) = &gw.writer else { return };
                let s = w.stats();
                e.sample(&["written"], s.written as f64);
                e.sample(&["dropped"], s.dropped as f64);
                e.sample(&["failed"], s.failed as f64);
            },
        ),
        (
            "switchyard_log_rows_dropped_total",
            "Request log rows dropped because the writer's queue was full.",
            CollectorType::Counter,
            &[],
            |gw, e| {
                let dropped = gw.writer.as_ref().map_or(0, |w| w.stats().dropped);
                e.sample(&[], dropped as f64);
            },
        ),
        (
            "switchyard_keys_active",
            "Virtual keys that are not revoked (auth is on when above 0).",
            CollectorType::Gauge,
            &[],
            |gw, e| {
                let n = gw.keys.list().iter().filter(|k| !k.is_revoked()).count();
                e.sample(&[], n as f64);
            },
        ),
    ];
    for (name, help, kind, labels, read) in families {
        let gw = gateway.clone();
        registry.register_collector(name, help, kind, labels, move |e| {
            if let Some(gw) = gw.get().and_then(Weak::upgrade) {
                read(&gw, e);
            }
        })?;
    }
    Ok(())
}
