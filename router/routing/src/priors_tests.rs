//! Cold start: before any traffic each model's health holds the catalog's latency priors for
//! it, so `optimize = "latency"` picks the catalog's fastest model instead of a tie.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::candidates::{self, DEFAULT_EXPECTED_OUTPUT, Decision, Preferences};
use crate::catalog::Catalog;
use crate::health::{Health, HealthConfig};
use crate::quality::{Quality, QualityConfig};
use crate::route::{ModelConfig, Optimize, RouteConfig};
use switchyard_types::ids::{ModelId, ProviderId};
use switchyard_types::{ChatRequest, Message, Role};

const MODELS: [&str; 9] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "claude-3-5-haiku",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "llama3.2",
];

fn configured() -> BTreeMap<ModelId, ModelConfig> {
    let catalog = Catalog::builtin().unwrap();
    MODELS
        .iter()
        .map(|m| {
            let id = ModelId::new(m);
            let cfg = ModelConfig {
                id: id.clone(),
                provider: ProviderId::new("p"),
                upstream: (*m).to_owned(),
                entry: catalog.get(m).unwrap().clone(),
            };
            (id, cfg)
        })
        .collect()
}

fn rank_by_latency(configured: &BTreeMap<ModelId, ModelConfig>, health: &Health) -> Decision {
    let ids: Vec<ModelId> = MODELS.iter().map(ModelId::new).collect();
    let route = RouteConfig::default_over(ids.clone());
    let request = ChatRequest::new("r", vec![Message::new(Role::User, "Say hello.")]);
    let prefs = Preferences {
        weights: Optimize::Latency.weights(),
        max_cost_usd: None,
        max_latency_ms: None,
        defer_context: false,
    };
    candidates::decide(
        configured,
        health,
        &Quality::new(QualityConfig::default()),
        &route,
        &ids,
        &request,
        &prefs,
        Instant::now(),
    )
}

#[tokio::test(start_paused = true)]
async fn with_no_traffic_latency_picks_the_catalogs_fastest_model() {
    let configured = configured();
    let health = Health::new(configured.values().map(|m| {
        let config = HealthConfig::default().with_catalog_priors(&m.entry);
        (m.id.clone(), config)
    }));
    let now = Instant::now();
    // Each model starts at its own prior, not the shared default.
    for m in configured.values() {
        let s = health.get(m.id.as_str()).unwrap().snapshot(now);
        let close = |got: f64, want: Option<f64>| (got - want.unwrap()).abs() < 1e-9;
        assert!(close(s.ttft_ms, m.entry.ttft_ms), "{}: {}", m.id, s.ttft_ms);
        assert!(close(s.tpot_ms, m.entry.tpot_ms), "{}: {}", m.id, s.tpot_ms);
        assert!(close(s.time_to_fail_ms, m.entry.ttft_ms), "{}", m.id);
    }
    let expected = |m: &ModelConfig| {
        m.entry.ttft_ms.unwrap() + DEFAULT_EXPECTED_OUTPUT * m.entry.tpot_ms.unwrap()
    };
    let fastest = configured
        .values()
        .min_by(|a, b| expected(a).total_cmp(&expected(b)))
        .unwrap();
    assert_eq!(fastest.id.as_str(), "gemini-2.0-flash");
    let d = rank_by_latency(&configured, &health);
    assert_eq!(d.eligible()[0].model, fastest.id, "{:?}", d.candidates);
    assert!((d.eligible()[0].latency_ms - expected(fastest)).abs() < 1e-6);
    let mut latencies: Vec<f64> = d.eligible().iter().map(|c| c.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    latencies.dedup();
    assert_eq!(latencies.len(), MODELS.len(), "no two models tie");
    // One shared prior for every model (what there was before) ties them all on latency, and
    // the cheapest wins whatever the preference.
    let flat = Health::uniform(&HealthConfig::default(), configured.keys().cloned());
    let d = rank_by_latency(&configured, &flat);
    let first = d.eligible()[0].latency_ms;
    assert!(d.eligible().iter().all(|c| c.latency_ms == first));
    assert_eq!(d.eligible()[0].model.as_str(), "llama3.2");
}
