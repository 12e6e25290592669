//! The gateway's shared state, built once from a validated `Config`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, ModelConfig};
use crate::ids::ProviderId;
use crate::providers::{self, Provider};

/// Everything a request needs, shared by all requests (`Arc<Gateway>`).
#[derive(Debug)]
pub struct Gateway {
    pub config: Arc<Config>,
    pub providers: HashMap<ProviderId, Provider>,
    pub started_at: Instant,
}

impl Gateway {
    /// Build the providers (one shared HTTP client) for a config.
    pub fn new(config: Config) -> Result<Arc<Gateway>, String> {
        let http = providers::http_client().map_err(|e| format!("HTTP client: {e}"))?;
        let providers = config
            .providers
            .values()
            .map(|s| (s.id.clone(), Provider::new(s.clone(), http.clone())))
            .collect();
        Ok(Arc::new(Gateway {
            config: Arc::new(config),
            providers,
            started_at: Instant::now(),
        }))
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.config.models.get(name)
    }

    pub fn provider(&self, id: &ProviderId) -> Option<&Provider> {
        self.providers.get(id)
    }
}
