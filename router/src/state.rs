//! The gateway's shared state, built once from a validated `Config`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ModelConfig};
use crate::ids::{ModelId, ProviderId};
use crate::providers::{self, Provider};
use crate::routing::health::{Health, HealthConfig, RetryBudget};

/// Everything a request needs, shared by all requests (`Arc<Gateway>`).
pub struct Gateway {
    pub config: Arc<Config>,
    pub providers: HashMap<ProviderId, Provider>,
    /// Live health of every configured model (latency, reliability, breaker).
    pub health: Health,
    /// The gateway-wide retry budget: same-model retries may be at most 20% of the requests of
    /// the last 10 s, plus 3 a second (Envoy's and Linkerd's defaults).
    pub retry_budget: RetryBudget,
    /// Prompts of the analyst endpoints, checked at startup.
    pub analyst: crate::analyst::Analyst,
    /// The WASM routing policies (`[policies] dir`), hot-reloaded; `None` without a folder.
    pub policies: Option<Arc<switchyard_plugins::Registry>>,
    pub started_at: Instant,
}

impl Gateway {
    /// Build the providers (one shared HTTP client) for a config.
    pub fn new(config: Config) -> Result<Arc<Gateway>, String> {
        Gateway::with_health(config, HealthConfig::default())
    }

    /// As `new`, with explicit health timings (breaker periods, decay), e.g. for tests.
    pub fn with_health(config: Config, health: HealthConfig) -> Result<Arc<Gateway>, String> {
        let http = providers::http_client().map_err(|e| format!("HTTP client: {e}"))?;
        let providers = config
            .providers
            .values()
            .map(|s| (s.id.clone(), Provider::new(s.clone(), http.clone())))
            .collect();
        let health = Health::new(health, config.models.keys().cloned());
        let analyst = crate::analyst::Analyst::new(&config.analyst)?;
        let policies = crate::policy::start(&config)?;
        Ok(Arc::new(Gateway {
            config: Arc::new(config),
            providers,
            health,
            retry_budget: RetryBudget::new(0.2, 3, Duration::from_secs(10)),
            analyst,
            policies,
            started_at: Instant::now(),
        }))
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.config.models.get(name)
    }

    pub fn provider(&self, id: &ProviderId) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// What an answer of `model` with this usage cost, USD (0 for an unknown model).
    pub fn usage_cost(&self, model: &ModelId, usage: &crate::types::Usage) -> f64 {
        self.config
            .models
            .get(model)
            .map_or(0.0, |m| m.entry.usage_cost(usage))
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
