//! The families updated on the request path, on `prometheus-client`.
//!
//! Every label value is bounded by the config: endpoints and cache outcomes are static strings,
//! routes and models are the configured names (a request that named something else never got a
//! route), statuses are HTTP codes. The handles of each configured model and of each route's
//! models are resolved once, at startup, so recording a request is a map lookup by name and a
//! few atomic adds; only `switchyard_requests_total` (whose status and cache labels vary) goes
//! through its family per request.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Stage;
use super::collect::{Collected, Sources};
use switchyard_store::RequestRecord;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for request/upstream latency in seconds: 5 ms to 60 s.
const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Buckets for the gateway's own overhead in seconds: 50 µs to 100 ms.
const OVERHEAD_SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// A configured name (route or model) as a label value: cloning it is a reference count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Name(Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    route: Name,
    model: Name,
    status: u16,
    cache: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteModel {
    route: Name,
    model: Name,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabel {
    model: Name,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Tokens {
    model: Name,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_SECONDS_BUCKETS.iter().copied())
}

fn overhead_histogram() -> Histogram {
    Histogram::new(OVERHEAD_SECONDS_BUCKETS.iter().copied())
}

/// A model's handles, resolved at startup.
struct ModelHandles {
    name: Name,
    ttft: Histogram,
    /// input, output, cached_input, reasoning.
    tokens: [Counter; 4],
    cost: Counter<f64, AtomicU64>,
    /// Latency sums of successful requests, for the alert engine.
    signals: Arc<super::alerts::ModelSignals>,
}

const DIRECTIONS: [&str; 4] = ["input", "output", "cached_input", "reasoning"];

/// The gateway's metrics (`GET /metrics`).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<RouteModel>,
    ttft: Histograms<ModelLabel>,
    tokens: Family<Tokens, Counter>,
    cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    overhead: [Histogram; 6],
    models: HashMap<Box<str>, ModelHandles>,
    routes: HashMap<Box<str>, Name>,
    /// route → model → its duration histogram (looked up by `&str`, no allocation).
    durations: HashMap<Box<str>, HashMap<Box<str>, Histogram>>,
    /// The label value of "no model answered".
    none: Name,
    /// Requests refused with 503 because `server.max_in_flight` were in flight (`api/shed.rs`).
    pub shed: Counter,
    /// Requests being served now (`api/shed.rs`): what a custom-metric autoscaler reads.
    pub in_flight: Gauge,
    /// Shadow copies sent, and dropped (`pipeline/shadow.rs`).
    pub shadow: super::ShadowMetrics,
    /// Alerts fired and active, webhook deliveries (`live/alerts.rs`).
    pub alerts: super::AlertMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The families, with the handles of every configured model and of `routes` (name → its
    /// models; a model is also a route of its own) resolved, and the scrape-time families
    /// reading `sources`.
    pub fn new<'a>(
        models: impl IntoIterator<Item = &'a str>,
        routes: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
        sources: Sources,
    ) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "switchyard_requests",
            "Requests answered, by endpoint, route, model that answered, HTTP status and cache outcome",
            requests.clone(),
        );
        let duration: Histograms<RouteModel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "switchyard_request_duration_seconds",
            "Time from arrival to the end of the answer (the whole stream when streaming)",
            duration.clone(),
        );
        let ttft: Histograms<ModelLabel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "switchyard_ttft_seconds",
            "Time to the first token (to the answer when not streaming)",
            ttft.clone(),
        );
        let tokens = Family::<Tokens, Counter>::default();
        registry.register(
            "switchyard_tokens",
            "Tokens by model and direction (input, output, cached_input, reasoning)",
            tokens.clone(),
        );
        let cost = Family::<ModelLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "switchyard_cost_usd",
            "Spend by model, USD, from provider usage (estimated when a stream sent none)",
            cost.clone(),
        );
        let stages: Histograms<StageLabel> = Family::new_with_constructor(overhead_histogram);
        registry.register(
            "switchyard_overhead_seconds",
            "The gateway's own time per request, by pipeline stage",
            stages.clone(),
        );
        let overhead = Stage::ALL.map(|s| {
            stages
                .get_or_create(&StageLabel { stage: s.as_str() })
                .clone()
        });
        let shed = Counter::default();
        registry.register(
            "switchyard_requests_shed",
            "Requests refused at once with 503 because server.max_in_flight requests were in flight",
            shed.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "switchyard_in_flight_requests",
            "Requests being served now (those under server.max_in_flight; health and metrics excluded)",
            in_flight.clone(),
        );
        let shadow = super::ShadowMetrics::register(&mut registry);
        let alerts = super::AlertMetrics::register(&mut registry);
        registry.register_collector(Box::new(Collected::new(sources)));

        let mut metrics = Metrics {
            registry,
            requests,
            duration,
            ttft,
            tokens,
            cost,
            overhead,
            models: HashMap::new(),
            routes: HashMap::new(),
            durations: HashMap::new(),
            none: Name(Arc::from("")),
            shed,
            in_flight,
            shadow,
            alerts,
        };
        metrics.routes.insert("".into(), metrics.none.clone());
        let models: Vec<&str> = models.into_iter().collect();
        let singles = models.iter().map(|m| (*m, vec![*m]));
        for (route, members) in routes.into_iter().chain(singles) {
            let name = Name(Arc::from(route));
            metrics.routes.insert(route.into(), name.clone());
            for model in members {
                let handles = metrics.resolve_model(model);
                let labels = RouteModel {
                    route: name.clone(),
                    model: handles.name.clone(),
                };
                let h = metrics.duration.get_or_create(&labels).clone();
                metrics
                    .durations
                    .entry(route.into())
                    .or_default()
                    .insert(model.into(), h);
            }
        }
        metrics
    }

    fn resolve_model(&mut self, model: &str) -> &ModelHandles {
        let (ttft, tokens, cost) = (&self.ttft, &self.tokens, &self.cost);
        self.models.entry(model.into()).or_insert_with(|| {
            let name = Name(Arc::from(model));
            let label = ModelLabel {
                model: name.clone(),
            };
            ModelHandles {
                ttft: ttft.get_or_create(&label).clone(),
                tokens: DIRECTIONS.map(|direction| {
                    tokens
                        .get_or_create(&Tokens {
                            model: name.clone(),
                            direction,
                        })
                        .clone()
                }),
                cost: cost.get_or_create(&label).clone(),
                signals: Arc::default(),
                name,
            }
        })
    }

    /// One finished request: `row` as logged; `endpoint` and `cache` are its static labels.
    pub fn request(
        &self,
        endpoint: &'static str,
        cache: &'static str,
        row: &RequestRecord,
        latency: Duration,
        ttft: Option<Duration>,
    ) {
        let model = row.model.as_deref().unwrap_or("");
        let handles = self.models.get(model);
        let route_label = self
            .routes
            .get(row.route.as_str())
            .cloned()
            .unwrap_or_else(|| Name(Arc::from(row.route.as_str())));
        let model_label = handles.map_or_else(|| self.none.clone(), |h| h.name.clone());
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                route: route_label.clone(),
                model: model_label.clone(),
                status: row.status,
                cache,
            })
            .inc();
        match self
            .durations
            .get(row.route.as_str())
            .and_then(|by_model| by_model.get(model))
        {
            Some(h) => h.observe(latency.as_secs_f64()),
            None => self
                .duration
                .get_or_create(&RouteModel {
                    route: route_label,
                    model: model_label,
                })
                .observe(latency.as_secs_f64()),
        }
        let Some(h) = handles.filter(|_| !model.is_empty()) else {
            return;
        };
        if row.status < 400 {
            h.signals.record(latency, ttft);
        }
        if let Some(t) = ttft {
            h.ttft.observe(t.as_secs_f64());
        }
        let counts = [
            row.prompt_tokens,
            row.completion_tokens,
            row.cached_tokens,
            row.reasoning_tokens,
        ];
        for (counter, n) in h.tokens.iter().zip(counts) {
            if n > 0 {
                counter.inc_by(u64::from(n));
            }
        }
        if row.cost_picousd > 0 {
            h.cost
                .inc_by(switchyard_types::money::pico_to_usd(row.cost_picousd));
        }
    }

    /// Each configured model's latency sums (what the alert engine samples).
    pub fn model_signals(&self) -> Vec<(String, Arc<super::alerts::ModelSignals>)> {
        let mut v: Vec<_> = self
            .models
            .iter()
            .map(|(name, h)| (name.to_string(), h.signals.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn stage(&self, stage: Stage, d: Duration) {
        self.overhead[stage as usize].observe(d.as_secs_f64());
    }

    /// The exposition in the Prometheus text format 0.0.4 (what `CONTENT_TYPE` says).
    pub fn render(&self) -> String {
        let mut open = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; a collector's error would only truncate it.
        let _ = prometheus_client::encoding::text::encode(&mut open, &self.registry);
        prometheus_text(&open)
    }
}

/// OpenMetrics text → Prometheus text 0.0.4. The two differ, for what we serve, in two places:
/// OpenMetrics names a counter family without its `_total` (its samples keep it), where 0.0.4
/// parsers expect the family's HELP and TYPE under the samples' name; and OpenMetrics ends with
/// `# EOF`. Every scraper reads 0.0.4; not every one reads OpenMetrics.
fn prometheus_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len() + 1024);
    // HELP comes before TYPE: hold it until the type says whether to rename.
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some((_, text)) = help.take() {
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        if let Some((name, text)) = help.take() {
            let _ = writeln!(out, "# HELP {name} {text}");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_and_eof_is_dropped() {
        let open = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n\
                    # HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            prometheus_text(open),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
