//! Configuration: TOML → validated runtime config, in two phases.
//!
//! Phase one parses raw serde types (`deny_unknown_fields`) section by section after `${VAR}`
//! interpolation; phase two resolves references (model → provider, model → catalog entry) and
//! checks values. Every error is collected with its path and reported together; secret values
//! never appear in an error or in `Debug` output.

mod alerts;
mod health;
mod interpolate;
mod log;
mod routes;
mod sections;
mod telemetry;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use alerts::{AlertRules, AlertsConfig, SignalConfig};
pub use health::{HealthSection, HealthSettings};
pub use interpolate::{Vars, interpolate};
pub use log::{LogConfig, valid_tag_name};
pub use sections::{
    AuthConfig, AuthMode, CompressionConfig, LiveConfig, MetricsConfig, OnFailure, OnFailureSpec,
    PerUse, PoliciesConfig, RedisConfig, ServerConfig, StoreConfig,
};
pub use switchyard_routing::route::{
    DEFAULT_ROUTE, ModelConfig, Optimize, RetryPolicy, RouteConfig, Weights,
};
pub use telemetry::{TelemetryConfig, TracesConfig};

pub use switchyard_analyst::AnalystConfig;
use switchyard_providers::{Dialect, ProviderKind, ProviderSettings};
use switchyard_routing::catalog::{Catalog, CatalogPatch};
use switchyard_sim::SimConfig;
use switchyard_types::ids::{ModelId, ProviderId, Secret};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: BTreeMap<ProviderId, ProviderSettings>,
    pub models: BTreeMap<ModelId, ModelConfig>,
    /// Always holds `auto` (see `routes`).
    pub routes: BTreeMap<String, RouteConfig>,
    pub catalog: Catalog,
    pub analyst: AnalystConfig,
    pub policies: PoliciesConfig,
    pub sim: SimConfig,
    pub cache: crate::cache::CacheConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    /// `[live]`: the live feed's decision sampling.
    pub live: LiveConfig,
    /// `[redis]`: shared budgets, rate limits, cache and key events; `None` = per replica.
    pub redis: Option<RedisConfig>,
    /// `[quality]`: the feedback estimator's prior, decay and bounds.
    pub quality: switchyard_routing::quality::QualityConfig,
    /// `[health]` and `[models.X.health]`: breaker, priors and decay, per model.
    pub health: HealthSettings,
    /// `[alerts]`: the alert engine's detectors, rules and webhook.
    pub alerts: AlertsConfig,
    /// `[telemetry.traces]`: OpenTelemetry traces over OTLP/HTTP; off when absent.
    pub telemetry: TelemetryConfig,
    /// `[log]`: the metadata tags kept with each request row (none by default).
    pub log: LogConfig,
}

/// One problem in the config, at a dotted path (`providers.openai.api_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.path.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    cors_origins: Vec<String>,
    header_read_ms: Option<u64>,
    body_read_ms: Option<u64>,
    idle_ms: Option<u64>,
    max_in_flight: Option<usize>,
    write_stall_ms: Option<u64>,
    drain_ms: Option<u64>,
    compression: Option<sections::RawCompression>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key: Option<String>,
    dialect: Option<Dialect>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Bounds on what this upstream may send (`switchyard_providers::Limits`).
    max_response_bytes: Option<usize>,
    max_event_bytes: Option<usize>,
    /// `switchyard_providers::Connection`.
    http2: Option<switchyard_providers::Http2>,
    pool_max_idle: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    provider: String,
    /// The catalog entry describing this model (default: the model's own name).
    catalog: Option<String>,
    /// Override the upstream id from the catalog.
    upstream: Option<String>,
    /// `[models.X.health]`: this model's health settings over `[health]`.
    health: Option<HealthSection>,
}

const SECTIONS: &[&str] = &[
    "server",
    "providers",
    "models",
    "routes",
    "catalog",
    "analyst",
    "policies",
    "sim",
    "cache",
    "store",
    "auth",
    "metrics",
    "live",
    "redis",
    "quality",
    "health",
    "alerts",
    "telemetry",
    "log",
];

/// Collects errors while loading.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserialize one value, recording a failure at `path` + the inner path.
    fn parse<T: DeserializeOwned>(&mut self, value: toml::Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = match (path.is_empty(), inner == ".") {
                    (_, true) => path.to_owned(),
                    (true, false) => inner,
                    (false, false) => format!("{path}.{inner}"),
                };
                self.push(full, e.into_inner().to_string());
                None
            }
        }
    }

    /// Each entry of a table section parsed on its own, so one bad entry hides no other error.
    fn parse_entries<T: DeserializeOwned>(
        &mut self,
        section: Option<toml::Value>,
        name: &str,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        match section {
            None => {}
            Some(toml::Value::Table(table)) => {
                for (key, value) in table {
                    let path = format!("{name}.{}", quote_key(&key));
                    if let Some(v) = self.parse(value, &path) {
                        out.insert(key, v);
                    }
                }
            }
            Some(_) => self.push(name, "expected a table"),
        }
        out
    }
}

/// `gpt-4o-mini` stays bare; `gpt-4.1` is quoted, as TOML would need it.
fn quote_key(key: &str) -> String {
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("\"{key}\"")
    }
}

/// Load and validate a config file.
pub fn load_file(path: &Path, vars: &Vars) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    load_str(&text, vars)
}

/// Load and validate config text.
pub fn load_str(text: &str, vars: &Vars) -> Result<Config, ConfigErrors> {
    load_table(parse_toml(text)?, vars)
}

/// TOML text as a table, a syntax error as a config error.
pub fn parse_toml(text: &str) -> Result<toml::Table, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("TOML syntax: {e}"),
        }])
    })
}

/// `over` merged into `base`: tables merge key by key, any other value replaces.
pub fn merge_toml(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_toml(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Load a parsed config.
pub fn load_table(mut doc: toml::Table, vars: &Vars) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::default();

    let mut interp_errors = Vec::new();
    for (key, value) in doc.iter_mut() {
        interpolate::interpolate_tree(value, key, vars, &mut interp_errors);
    }
    for (path, message) in interp_errors {
        errors.push(path, message);
    }
    for key in doc.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errors.push(
                key.clone(),
                format!("unknown section (expected one of {})", SECTIONS.join(", ")),
            );
        }
    }

    let raw_server: RawServer = match doc.remove("server") {
        Some(v) => errors.parse(v, "server").unwrap_or_default(),
        None => RawServer::default(),
    };
    let raw_providers: BTreeMap<String, RawProvider> =
        errors.parse_entries(doc.remove("providers"), "providers");
    let mut raw_models: BTreeMap<String, RawModel> =
        errors.parse_entries(doc.remove("models"), "models");
    let model_health: BTreeMap<String, HealthSection> = raw_models
        .iter_mut()
        .filter_map(|(name, m)| m.health.take().map(|h| (name.clone(), h)))
        .collect();
    let global_health: HealthSection = match doc.remove("health") {
        Some(v) => errors.parse(v, "health").unwrap_or_default(),
        None => HealthSection::default(),
    };
    let raw_routes: BTreeMap<String, routes::RawRoute> =
        errors.parse_entries(doc.remove("routes"), "routes");
    let patches: BTreeMap<String, CatalogPatch> =
        errors.parse_entries(doc.remove("catalog"), "catalog");
    let analyst: AnalystConfig = match doc.remove("analyst") {
        Some(v) => errors.parse(v, "analyst").unwrap_or_default(),
        None => AnalystConfig::default(),
    };
    let policies: PoliciesConfig = match doc.remove("policies") {
        Some(v) => errors.parse(v, "policies").unwrap_or_default(),
        None => PoliciesConfig::default(),
    };
    if policies.slots == 0 || policies.slots > 1000 {
        errors.push("policies.slots", "must be between 1 and 1000");
    }
    let cache: crate::cache::CacheConfig = match doc.remove("cache") {
        Some(v) => errors.parse(v, "cache").unwrap_or_default(),
        None => crate::cache::CacheConfig::default(),
    };
    for (path, message) in cache.validate() {
        errors.push(path, message);
    }
    let store: StoreConfig = match doc.remove("store") {
        Some(v) => errors.parse(v, "store").unwrap_or_default(),
        None => StoreConfig::default(),
    };
    let url = store.url.as_str();
    if !(url == "none"
        || url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        // Never echo the URL: it may hold a password.
        errors.push("store.url", "must be sqlite://PATH, postgres://…, or none");
    }
    if store.batch_rows == 0 || store.queue == 0 || store.flush_ms == 0 {
        errors.push("store", "batch_rows, queue and flush_ms must be at least 1");
    }
    let mut auth: AuthConfig = match doc.remove("auth") {
        Some(v) => errors.parse(v, "auth").unwrap_or_default(),
        None => AuthConfig::default(),
    };
    if auth.admin_key.is_none() {
        auth.admin_key = vars
            .get("SWITCHYARD_ADMIN_KEY")
            .filter(|k| !k.is_empty())
            .map(Secret::new);
    }
    if auth
        .admin_key
        .as_ref()
        .is_some_and(|k| k.expose().len() < 16)
    {
        errors.push("auth.admin_key", "must be at least 16 characters");
    }
    let sim: SimConfig = match doc.remove("sim") {
        Some(v) => errors.parse(v, "sim").unwrap_or_default(),
        None => SimConfig::default(),
    };
    if let Err(sim_errors) = sim.validate() {
        for e in sim_errors {
            match e {
                switchyard_sim::SimError::Config { path, message } => {
                    errors.push(format!("sim.{path}"), message);
                }
                other => errors.push("sim", other.to_string()),
            }
        }
    }

    let server = resolve_server(raw_server, &mut errors);
    let loopback = server.listen.ip().is_loopback();
    let mode = auth
        .mode
        .unwrap_or(if auth.admin_key.is_some() || !loopback {
            AuthMode::Keys
        } else {
            AuthMode::Open
        });
    if mode == AuthMode::Open && !loopback && !auth.allow_open_on_network {
        errors.push(
            "auth.mode",
            format!(
                "'open' (no API key needed) on {}, which is not a loopback address: \
                 set [auth] allow_open_on_network = true to allow it, or use mode = \"keys\"",
                server.listen
            ),
        );
    }
    auth.mode = Some(mode);
    if auth.budget_wait_ms > 60_000 {
        errors.push("auth.budget_wait_ms", "must be at most 60000");
    }
    let metrics: MetricsConfig = match doc.remove("metrics") {
        Some(v) => errors.parse(v, "metrics").unwrap_or_default(),
        None => MetricsConfig::default(),
    };
    if metrics
        .token
        .as_ref()
        .is_some_and(|k| k.expose().len() < 16)
    {
        errors.push("metrics.token", "must be at least 16 characters");
    }
    let live: LiveConfig = match doc.remove("live") {
        Some(v) => errors.parse(v, "live").unwrap_or_default(),
        None => LiveConfig::default(),
    };
    if !(0.0..=1.0).contains(&live.decision_sample) {
        errors.push(
            "live.decision_sample",
            format!("must be between 0 and 1 (got {})", live.decision_sample),
        );
    }
    let quality: switchyard_routing::quality::QualityConfig = match doc.remove("quality") {
        Some(v) => errors.parse(v, "quality").unwrap_or_default(),
        None => Default::default(),
    };
    for (field, message) in quality.validate() {
        errors.push(format!("quality.{field}"), message);
    }
    let log: LogConfig = match doc.remove("log") {
        Some(v) => errors.parse(v, "log").unwrap_or_default(),
        None => LogConfig::default(),
    };
    for (path, message) in log.validate() {
        errors.push(path, message);
    }
    let redis: Option<RedisConfig> = doc.remove("redis").and_then(|v| errors.parse(v, "redis"));
    if let Some(r) = &redis {
        for (path, message) in r.validate() {
            errors.push(path, message);
        }
    }
    let mut catalog = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            errors.push("catalog", e);
            Catalog::default()
        }
    };
    for (name, patch) in patches {
        let base = catalog.get(&name).cloned();
        match patch.apply(&name, base.as_ref()) {
            Ok(entry) => catalog.insert(name, entry),
            Err(e) => errors.push(format!("catalog.{}", quote_key(&name)), e),
        }
    }
    let providers = resolve_providers(raw_providers, &mut errors);
    let models = resolve_models(raw_models, &providers, &catalog, &mut errors);
    let health = health::resolve(global_health, model_health, &models, &mut errors);
    let alerts = alerts::load(doc.remove("alerts"), &mut errors);
    let telemetry = telemetry::load(doc.remove("telemetry"), &mut errors);
    let mut route_errors = Vec::new();
    let routes = routes::resolve(raw_routes, &models, &mut route_errors);
    for (path, message) in route_errors {
        errors.push(path, message);
    }
    if let Some(route) = &analyst.route
        && !routes.contains_key(route)
        && !models.contains_key(route.as_str())
    {
        errors.push(
            "analyst.route",
            format!("no route or model named '{route}'"),
        );
    }

    if !errors.0.is_empty() {
        return Err(ConfigErrors(errors.0));
    }
    Ok(Config {
        server,
        providers,
        models,
        routes,
        catalog,
        analyst,
        policies,
        sim,
        cache,
        store,
        auth,
        metrics,
        live,
        redis,
        quality,
        health,
        alerts,
        telemetry,
        log,
    })
}

fn resolve_server(raw: RawServer, errors: &mut Errors) -> ServerConfig {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|_| {
        errors.push(
            "server.listen",
            format!("'{listen_text}' is not an address like 127.0.0.1:8080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes < 1024 {
        errors.push("server.max_body_bytes", "must be at least 1024");
    }
    let mut ms = |name: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if v == 0 || v > 3_600_000 {
            errors.push(
                format!("server.{name}"),
                "must be 1 to 3600000 milliseconds",
            );
        }
        v
    };
    let header_read_ms = ms("header_read_ms", raw.header_read_ms, 10_000);
    let body_read_ms = ms("body_read_ms", raw.body_read_ms, 30_000);
    let idle_ms = ms("idle_ms", raw.idle_ms, 60_000);
    let write_stall_ms = ms("write_stall_ms", raw.write_stall_ms, 30_000);
    let drain_ms = ms("drain_ms", raw.drain_ms, 10_000);
    let max_in_flight = raw.max_in_flight.unwrap_or(1024);
    if max_in_flight == 0 {
        errors.push("server.max_in_flight", "must be at least 1");
    }
    let allowed_hosts = match raw.allowed_hosts {
        Some(hosts) => {
            for (i, h) in hosts.iter().enumerate() {
                if h.is_empty() || h.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
                    errors.push(
                        format!("server.allowed_hosts[{i}]"),
                        format!(
                            "'{h}' is not a host name (a name or address, with an optional :port)"
                        ),
                    );
                }
            }
            hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect()
        }
        None => sections::default_allowed_hosts(listen),
    };
    for (i, o) in raw.cors_origins.iter().enumerate() {
        if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
            errors.push(
                format!("server.cors_origins[{i}]"),
                format!("'{o}' is not an origin like https://app.example.com"),
            );
        }
    }
    ServerConfig {
        listen,
        max_body_bytes,
        allowed_hosts,
        cors_origins: raw.cors_origins,
        header_read: Duration::from_millis(header_read_ms),
        body_read: Duration::from_millis(body_read_ms),
        idle: Duration::from_millis(idle_ms),
        max_in_flight,
        write_stall: Duration::from_millis(write_stall_ms),
        drain: Duration::from_millis(drain_ms),
        compression: sections::compression(raw.compression, errors),
    }
}

fn resolve_providers(
    raw: BTreeMap<String, RawProvider>,
    errors: &mut Errors,
) -> BTreeMap<ProviderId, ProviderSettings> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let path = format!("providers.{}", quote_key(&name));
        let base_url = match p.base_url.or(p.kind.default_base_url().map(str::to_owned)) {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            Some(_) => {
                errors.push(
                    format!("{path}.base_url"),
                    "must start with http:// or https://",
                );
                continue;
            }
            None => {
                errors.push(
                    format!("{path}.base_url"),
                    format!("required for kind \"{}\"", p.kind.as_str()),
                );
                continue;
            }
        };
        let api_key = p.api_key.filter(|k| !k.is_empty());
        if api_key.is_none() && p.kind.needs_api_key() {
            errors.push(
                format!("{path}.api_key"),
                format!(
                    "required for kind \"{}\" (e.g. api_key = \"${{{}_API_KEY}}\")",
                    p.kind.as_str(),
                    name.to_ascii_uppercase().replace('-', "_")
                ),
            );
        }
        if let Some(key) = &api_key
            && http::HeaderValue::from_str(key).is_err()
        {
            // Never echo the key: it is a secret even when malformed.
            errors.push(
                format!("{path}.api_key"),
                "contains characters not allowed in an HTTP header",
            );
        }
        if p.dialect.is_some() && p.kind != ProviderKind::OpenAiCompatible {
            errors.push(
                format!("{path}.dialect"),
                "only applies to kind \"openai-compatible\"",
            );
        }
        let mut headers = Vec::new();
        for (k, v) in p.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                errors.push(
                    format!("{path}.headers"),
                    format!("invalid header name '{k}'"),
                );
            } else if http::HeaderValue::from_str(&v).is_err() {
                errors.push(
                    format!("{path}.headers.{}", quote_key(&k)),
                    "invalid header value",
                );
            } else {
                headers.push((k, v));
            }
        }
        let defaults = switchyard_providers::Limits::default();
        let limits = switchyard_providers::Limits {
            max_response_bytes: p.max_response_bytes.unwrap_or(defaults.max_response_bytes),
            max_event_bytes: p.max_event_bytes.unwrap_or(defaults.max_event_bytes),
        };
        if limits.max_response_bytes == 0 || limits.max_event_bytes == 0 {
            errors.push(
                path.clone(),
                "max_response_bytes and max_event_bytes must be positive",
            );
        }
        let connection = sections::connection(p.http2, p.pool_max_idle, &path, errors);
        let id = ProviderId::new(&name);
        out.insert(
            id.clone(),
            ProviderSettings {
                id,
                kind: p.kind,
                dialect: p.dialect.unwrap_or_default(),
                base_url,
                api_key: api_key.map(Secret::new),
                headers,
                limits,
                connection,
            },
        );
    }
    out
}

fn resolve_models(
    raw: BTreeMap<String, RawModel>,
    providers: &BTreeMap<ProviderId, ProviderSettings>,
    catalog: &Catalog,
    errors: &mut Errors,
) -> BTreeMap<ModelId, ModelConfig> {
    let mut out = BTreeMap::new();
    for (name, m) in raw {
        let path = format!("models.{}", quote_key(&name));
        let provider = ProviderId::new(&m.provider);
        if !providers.contains_key(&provider) {
            let known: Vec<&str> = providers.keys().map(ProviderId::as_str).collect();
            errors.push(
                format!("{path}.provider"),
                format!(
                    "no provider named '{}' (configured: {})",
                    m.provider,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let catalog_name = m.catalog.as_deref().unwrap_or(&name);
        let Some(entry) = catalog.get(catalog_name) else {
            let field = if m.catalog.is_some() { ".catalog" } else { "" };
            errors.push(
                format!("{path}{field}"),
                format!(
                    "'{catalog_name}' is not in the model catalog; add a [catalog.\"{catalog_name}\"] \
                     table or set `catalog` to a known entry"
                ),
            );
            continue;
        };
        let id = ModelId::new(&name);
        out.insert(
            id.clone(),
            ModelConfig {
                id,
                provider,
                upstream: m.upstream.unwrap_or_else(|| entry.upstream.clone()),
                entry: entry.clone(),
            },
        );
    }
    if out.is_empty() && errors.0.iter().all(|e| !e.path.starts_with("models")) {
        errors.push("models", "at least one model is required");
    }
    out
}

impl Config {
    /// A one-paragraph summary for `switchyard check`.
    pub fn summary(&self) -> String {
        let providers: Vec<String> = self
            .providers
            .values()
            .map(|p| format!("{} ({})", p.id, p.kind.as_str()))
            .collect();
        let models: Vec<String> = self
            .models
            .values()
            .map(|m| format!("{} → {}", m.id, m.provider))
            .collect();
        let routes: Vec<String> = self
            .routes
            .values()
            .map(|r| format!("{} ({} models)", r.name, r.models.len()))
            .collect();
        let health = self
            .health
            .summary()
            .map(|h| format!("\nhealth: {h}"))
            .unwrap_or_default();
        format!(
            "listen {}\nauth: {}\n{} provider(s): {}\n{} model(s): {}\n{} route(s): {}\ncatalog: {} entries{health}\n{}",
            self.server.listen,
            self.auth_summary(),
            providers.len(),
            providers.join(", "),
            models.len(),
            models.join(", "),
            routes.len(),
            routes.join(", "),
            self.catalog.len(),
            self.telemetry.summary()
        )
    }
}

impl Config {
    /// The resolved auth mode in words, for `switchyard check` and the startup log.
    pub fn auth_summary(&self) -> String {
        match self.auth.mode() {
            AuthMode::Keys => format!(
                "keys (every model call needs a virtual key; admin API {})",
                if self.auth.admin_key.is_some() {
                    "on"
                } else {
                    "off: no admin key"
                }
            ),
            AuthMode::Open => format!(
                "open (no API key needed; listening on {}{})",
                self.server.listen,
                if self.server.listen.ip().is_loopback() {
                    ", loopback only"
                } else {
                    ", allowed on the network by allow_open_on_network"
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests;
