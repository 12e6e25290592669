//! The shadow families (`pipeline/shadow.rs`): shadows by route and outcome, and shadows dropped
//! under load (the pool of shadows in flight full, or the gateway's own requests near its limit). Routes are configured names (only a
//! configured route has a shadow) and outcomes static strings, so every label is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    route: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// `switchyard_shadow_requests_total{route, outcome}` and `switchyard_shadow_dropped_total{route}`.
#[derive(Debug, Default)]
pub struct ShadowMetrics {
    requests: Family<OutcomeLabels, Counter>,
    dropped: Family<RouteLabel, Counter>,
}

impl ShadowMetrics {
    pub(super) fn register(registry: &mut Registry) -> ShadowMetrics {
        let m = ShadowMetrics::default();
        registry.register(
            "switchyard_shadow_requests",
            "Shadow copies of sampled requests, by route and outcome (ok, error, filtered: the \
             shadow model could not take it, refused: the key's budget, same_model: the shadow \
             model gave the real answer, shutdown)",
            m.requests.clone(),
        );
        registry.register(
            "switchyard_shadow_dropped",
            "Shadow copies dropped under load: the pool of shadows in flight was full, or more \
             than 3/4 of server.max_in_flight requests were in flight",
            m.dropped.clone(),
        );
        m
    }

    pub fn outcome(&self, route: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&OutcomeLabels {
                route: route.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn dropped(&self, route: &str) {
        self.dropped
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc();
    }
}
