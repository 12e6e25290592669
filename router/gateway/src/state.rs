//! The gateway's shared state, built once from a validated `Config`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::ResponseCache;
use crate::config::{Config, ModelConfig};
use crate::exchange::Sinks;
use crate::execute::Upstreams;
use crate::keys::Keys;
use crate::shared::{Event, Shared};
use crate::telemetry::{Metrics, Sources};
use switchyard_providers::{self as providers, Provider};
use switchyard_routing::health::{Health, HealthConfig, RetryBudget};
use switchyard_routing::quality::Quality;
use switchyard_store::{Ledger, LedgerConfig, Store, Writer, WriterConfig};
use switchyard_types::ids::ProviderId;

/// Everything a request needs, shared by all requests (`Arc<Gateway>`).
pub struct Gateway {
    pub config: Arc<Config>,
    pub providers: HashMap<ProviderId, Provider>,
    /// Live health of every configured model (latency, reliability, breaker).
    pub health: Arc<Health>,
    /// Quality from feedback per (model, route, task) (`[quality]`): updated by
    /// `POST /ai/feedback`, rebuilt from the store at start and every `refresh_s`.
    pub quality: Arc<Quality>,
    /// The gateway-wide retry budget: same-model retries may be at most 20% of the requests of
    /// the last 10 s, plus 3 a second (Envoy's and Linkerd's defaults).
    pub retry_budget: RetryBudget,
    /// Per route with `hedge`: hedges may be at most its `max_share` of the route's requests of
    /// the last 10 s.
    pub hedge_budgets: HashMap<String, RetryBudget>,
    /// Prompts of the analyst endpoints, checked at startup.
    pub analyst: switchyard_analyst::Analyst,
    /// The WASM routing policies (`[policies] dir`), hot-reloaded; `None` without a folder.
    pub policies: Option<Arc<switchyard_plugins::Registry>>,
    /// Exact-match answers (`[cache]`).
    pub cache: Arc<ResponseCache>,
    /// Virtual keys, their limits and spend; the admin key.
    pub keys: Arc<Keys>,
    /// Request log, keys and spend (`[store]`); `None` when `url = "none"` or in-process tests.
    pub store: Option<Store>,
    /// Metrics, the batched request log writer and the spend ledger (the last two with
    /// `store`): where every finished exchange goes.
    pub sinks: Arc<Sinks>,
    /// Shadow requests in flight (`pipeline/shadow.rs`): a bounded pool, dropped when full.
    pub shadows: Arc<crate::pipeline::Shadows>,
    /// Each split route's per-arm counters (`/ai/performance`).
    pub arms: Arc<switchyard_routing::split::ArmStats>,
    /// The live event feed (`GET /ai/stream`, the dashboard).
    pub live: Arc<crate::live::Live>,
    /// The alert engine's active and recent alerts (`GET /ai/alerts`, `[alerts]`).
    pub alerts: Arc<crate::live::alerts::Alerts>,
    pub started_at: Instant,
    /// Cancelled when shutdown's drain time (`server.drain_ms`) is over: what is still in
    /// flight ends at once, streams with an explicit error event.
    pub abort: tokio_util::sync::CancellationToken,
}

impl Gateway {
    /// Build the providers (one shared HTTP client) for a config.
    pub fn new(config: Config) -> Result<Arc<Gateway>, String> {
        Gateway::with_health(config, HealthConfig::default())
    }

    /// As `new`, with explicit health timings (breaker periods, decay), e.g. for tests: the
    /// base every model's settings start from, under the config's `[health]` tables.
    pub fn with_health(config: Config, health: HealthConfig) -> Result<Arc<Gateway>, String> {
        let admin = config
            .auth
            .admin_key
            .as_ref()
            .map(|k| k.expose().to_owned());
        let keys = Keys::in_memory(config.auth.mode(), admin.as_deref());
        Gateway::build(config, health, keys, None)
    }

    /// The gateway with its store (`[store] url`): migrations run, keys and their spend loaded,
    /// the request log writer and the retention task started. `serve` and `demo` use this.
    pub async fn connect(config: Config) -> Result<Arc<Gateway>, String> {
        let admin = config
            .auth
            .admin_key
            .as_ref()
            .map(|k| k.expose().to_owned());
        if !config.store.enabled() {
            let keys = Keys::in_memory(config.auth.mode(), admin.as_deref());
            return Gateway::build(config, HealthConfig::default(), keys, None);
        }
        let url = &config.store.url;
        if let Some(path) = url.strip_prefix("sqlite://")
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let store = Store::connect(url)
            .await
            .map_err(|e| format!("store ({}): {e}", switchyard_store::redacted_url(url)))?;
        let shared = match &config.redis {
            Some(r) => Some(Shared::connect(r, Some(store.clone())).await?),
            None => None,
        };
        let keys = Keys::load(store.clone(), config.auth.mode(), admin.as_deref(), shared).await?;
        let gw = Gateway::build(config, HealthConfig::default(), keys, Some(store))?;
        // Keys made or revoked by other replicas sharing the store: at once over Redis when
        // it is configured, and by re-reading the store every 2 s in any case.
        Keys::spawn_refresh(&gw.keys, Duration::from_secs(2));
        gw.follow_events();
        crate::api::feedback::learn(&gw).await;
        Ok(gw)
    }

    /// Follow other replicas' key events and cache clears (with `[redis]`).
    fn follow_events(self: &Arc<Self>) {
        let Some(shared) = self.keys.shared() else {
            return;
        };
        let keys = Arc::downgrade(&self.keys);
        let cache = Arc::downgrade(&self.cache);
        let keys_again = keys.clone();
        shared.follow(
            move |event| {
                if let Event::CacheClear = event {
                    if let Some(c) = cache.upgrade() {
                        c.clear();
                    }
                } else if let Some(k) = keys.upgrade() {
                    k.on_event(&event);
                }
            },
            move || {
                if let Some(k) = keys_again.upgrade() {
                    tokio::spawn(async move {
                        if let Err(e) = k.refresh().await {
                            tracing::warn!(error = %e, "key refresh failed");
                        }
                    });
                }
            },
        );
    }

    fn build(
        config: Config,
        health: HealthConfig,
        keys: Keys,
        store: Option<Store>,
    ) -> Result<Arc<Gateway>, String> {
        // One client (one pool) per distinct `[providers.X]` connection setting.
        let mut clients: HashMap<providers::Connection, reqwest::Client> = HashMap::new();
        let mut built = HashMap::new();
        for s in config.providers.values() {
            let http = match clients.get(&s.connection) {
                Some(client) => client.clone(),
                None => {
                    let client = providers::http_client_for(s.connection)
                        .map_err(|e| format!("HTTP client: {e}"))?;
                    clients.insert(s.connection, client.clone());
                    client
                }
            };
            built.insert(s.id.clone(), Provider::new(s.clone(), http));
        }
        let providers = built;
        // Every model with its own settings: `health` (the defaults, or a test's timings), then
        // `[health]`, the catalog's latency priors and `[models.X.health]`.
        let per_model = |m: &ModelConfig| (m.id.clone(), config.health.for_model(m, &health));
        let health = Arc::new(Health::new(config.models.values().map(per_model)));
        let analyst = switchyard_analyst::Analyst::new(&config.analyst)?;
        let policies = crate::policy::start(&config)?;
        let keys = Arc::new(keys);
        let interval = Duration::from_millis(config.store.flush_ms);
        let writer = store.as_ref().map(|store| {
            let cfg = WriterConfig {
                capacity: config.store.queue,
                batch_rows: config.store.batch_rows,
                interval,
            };
            Writer::spawn(store.clone(), cfg)
        });
        let ledger = store
            .as_ref()
            .map(|store| Ledger::spawn(store.clone(), LedgerConfig { interval }));
        if let Some(store) = &store
            && config.store.retention_days > 0
        {
            let keep = Duration::from_secs(u64::from(config.store.retention_days) * 86_400);
            switchyard_store::spawn_retention(store.clone(), keep, Duration::from_secs(3600));
        }
        let l2 = keys.shared().and_then(|s| s.l2.clone());
        let cache = Arc::new(ResponseCache::new(&config.cache).with_l2(l2));
        let metrics = Metrics::new(
            config.models.keys().map(|m| m.as_str()),
            config.routes.values().map(|r| {
                (
                    r.name.as_str(),
                    r.models.iter().map(|m| m.as_str()).collect(),
                )
            }),
            Sources {
                cache: cache.clone(),
                health: health.clone(),
                policies: policies.clone(),
                writer: writer.clone(),
                ledger: ledger.clone(),
                keys: keys.clone(),
                shared: keys.shared().cloned(),
            },
        );
        let hedge_budgets = hedge_budgets(&config);
        let live = Arc::new(crate::live::Live::new());
        let quality = Arc::new(Quality::new(config.quality));
        let shadows = Arc::new(crate::pipeline::Shadows::new(config.server.max_in_flight));
        let arms = Arc::new(switchyard_routing::split::ArmStats::new(
            config
                .routes
                .values()
                .filter_map(|r| r.split.as_ref().map(|s| (r.name.as_str(), s))),
        ));
        let alerts = Arc::new(crate::live::alerts::Alerts::new(
            config.alerts.clone(),
            crate::live::alerts::AlertSources {
                health: health.clone(),
                signals: metrics.model_signals(),
                keys: keys.clone(),
                cache: cache.clone(),
                policies: policies.clone(),
                shared: keys.shared().cloned(),
            },
            live.clone(),
            metrics.alerts.clone(),
        ));
        let traces = crate::telemetry::otel::Traces::start(&config)?;
        let gw = Arc::new(Gateway {
            cache,
            config: Arc::new(config),
            providers,
            health,
            quality,
            retry_budget: RetryBudget::new(0.2, 3, Duration::from_secs(10)),
            hedge_budgets,
            analyst,
            policies,
            keys,
            store,
            sinks: Arc::new(Sinks {
                metrics,
                writer,
                ledger,
                live: live.clone(),
                traces,
            }),
            shadows,
            arms,
            live,
            alerts,
            started_at: Instant::now(),
            abort: tokio_util::sync::CancellationToken::new(),
        });
        gw.alerts.start();
        crate::live::snapshot::spawn(crate::live::snapshot::Sources {
            live: Arc::downgrade(&gw.live),
            health: gw.health.clone(),
            keys: gw.keys.clone(),
            cache: gw.cache.clone(),
            policies: gw.policies.clone(),
            models: crate::live::snapshot::providers_of(&gw.config),
        });
        Ok(gw)
    }

    /// After the HTTP server has drained: flush every queued log row and all pending spend,
    /// then close the store.
    pub async fn shutdown(&self) {
        if let Some(w) = &self.sinks.writer {
            let stats = w.shutdown().await;
            tracing::info!(
                written = stats.written,
                dropped = stats.dropped,
                failed = stats.failed,
                "request log flushed"
            );
        }
        if let Some(l) = &self.sinks.ledger {
            let stats = l.shutdown().await;
            tracing::info!(
                written_picousd = stats.written_picousd,
                lost_picousd = stats.lost_picousd,
                "spend ledger flushed"
            );
        }
        if let Some(traces) = &self.sinks.traces {
            traces.shutdown().await;
        }
        if let Some(store) = &self.store {
            store.close().await;
        }
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.config.models.get(name)
    }

    pub fn provider(&self, id: &ProviderId) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// What the attempt loop may touch.
    pub fn upstreams(&self) -> Upstreams<'_> {
        Upstreams {
            models: &self.config.models,
            health: &self.health,
            providers: &self.providers,
            retry_budget: &self.retry_budget,
            hedge_budgets: &self.hedge_budgets,
        }
    }
}

/// One hedge budget per hedged route: a share of its recent requests, with no floor (a route
/// with little traffic hedges little).
fn hedge_budgets(config: &Config) -> HashMap<String, RetryBudget> {
    config
        .routes
        .values()
        .filter_map(|r| {
            let h = r.hedge?;
            Some((
                r.name.clone(),
                RetryBudget::new(h.max_share, 0, Duration::from_secs(10)),
            ))
        })
        .collect()
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
