//! Simulated upstreams: loopback HTTP servers that speak the OpenAI, Anthropic, Gemini and
//! Ollama (OpenAI-compatible) wire formats byte-faithfully, with seeded answers, latency and
//! faults, plus a control API. Chat and embeddings both; Anthropic's prompt cache is accounted
//! (`prompt_cache.rs`). Used by `switchyard demo`, `switchyard sim`, tests and benchmarks.
//! It must stay fast: no locks held across awaits, no sleeping when a latency is zero, and it
//! never calls out to the network.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod anthropic;
mod call;
mod control;
mod embeddings;
mod gemini;
mod openai;
mod openai_errors;
mod playback;
mod profile;
mod prompt_cache;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_embed;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_native;
mod text;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use axum::serve::ListenerExt;
use tokio_util::sync::CancellationToken;

pub use profile::{Fault, FaultMode, SimError};
use profile::{FaultTable, Resolved, fnv1a};

/// Requests larger than this are refused with 413 (real APIs accept tens of MiB).
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// How long `SimHandle::shutdown` lets in-flight responses finish before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    #[serde(default)]
    pub seed: u64,
    /// Applies to every model.
    #[serde(default)]
    pub defaults: Profile,
    /// Keyed by the upstream model id in the request body/path, e.g. "gpt-4o-mini".
    #[serde(default)]
    pub models: BTreeMap<String, Profile>,
}

impl SimConfig {
    /// Every problem in the config, each with its path; `Sim::new` falls back to built-in
    /// zeros for an invalid profile, so loaders should call this first and fail once.
    pub fn validate(&self) -> Result<(), Vec<SimError>> {
        let empty = Profile::default();
        let mut errors = Vec::new();
        if let Err(message) = Resolved::merge(None, &self.defaults) {
            errors.push(SimError::Config {
                path: "defaults".to_owned(),
                message,
            });
        }
        for (name, profile) in &self.models {
            if let Err(message) = Resolved::merge(Some(profile), &empty) {
                errors.push(SimError::Config {
                    path: format!("models.{name}"),
                    message,
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Every field optional; a model's profile is merged over `defaults`, then over built-in zeros.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Time to first token.
    pub ttft_ms: Option<LatencyDist>,
    /// Time per output token (streaming gap; non-stream total adds n·tpot).
    pub tpot_ms: Option<LatencyDist>,
    /// Answer length when the request does not cap it lower (default 16).
    pub output_tokens: Option<u32>,
    /// Fraction of requests answered with `error_fault`.
    pub error_rate: Option<f64>,
    /// Fault spec used for `error_rate` (default "500").
    pub error_fault: Option<String>,
}

/// A latency in milliseconds: normal truncated at 0 (the default) or lognormal with the given
/// mean and standard deviation, optionally with a slow mode: a share of draws multiplied by a
/// factor (`{ mean = 200, stddev = 80, dist = "lognormal", slow_share = 0.05, slow_factor = 10 }`
/// is a heavy-tailed time to first token).
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyDist {
    pub mean: f64,
    #[serde(default)]
    pub stddev: f64,
    #[serde(default)]
    pub dist: Dist,
    /// Share of draws in the slow mode, 0..=1.
    #[serde(default)]
    pub slow_share: f64,
    /// What the slow mode multiplies a draw by (≥ 1; default 10).
    #[serde(default = "default_slow_factor")]
    pub slow_factor: f64,
}

fn default_slow_factor() -> f64 {
    10.0
}

impl Default for LatencyDist {
    fn default() -> Self {
        LatencyDist {
            mean: 0.0,
            stddev: 0.0,
            dist: Dist::Normal,
            slow_share: 0.0,
            slow_factor: default_slow_factor(),
        }
    }
}

/// The shape of a `LatencyDist`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    #[default]
    Normal,
    /// Lognormal with the given mean and standard deviation (always positive, right-skewed).
    Lognormal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
}

impl WireFormat {
    /// Path prefix of this format on the sim's listener; clients append e.g.
    /// `/chat/completions`, `/messages` or `/models/{model}:generateContent`.
    pub fn base_path(self) -> &'static str {
        match self {
            WireFormat::OpenAi => "/openai/v1",
            WireFormat::Anthropic => "/anthropic/v1",
            WireFormat::Gemini => "/gemini/v1beta",
            WireFormat::Ollama => "/ollama/v1",
        }
    }
}

/// Snapshot of the per-model counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SimStats {
    pub models: BTreeMap<String, ModelStats>,
    /// Requests that followed a `redirect` fault to `/_sim/redirected` (another host name).
    pub redirects_followed: u64,
    /// Of those, how many carried credentials (`authorization`, `x-api-key`,
    /// `x-goog-api-key`): a key that left its host.
    pub redirected_credentials: u64,
}

impl SimStats {
    /// Counters of one model (zeros if it was never seen).
    pub fn model(&self, id: &str) -> ModelStats {
        self.models.get(id).copied().unwrap_or_default()
    }

    /// Counters summed over all models.
    pub fn total(&self) -> ModelStats {
        self.models
            .values()
            .fold(ModelStats::default(), |a, m| ModelStats {
                requests: a.requests + m.requests,
                faults_injected: a.faults_injected + m.faults_injected,
                streams_completed: a.streams_completed + m.streams_completed,
                streams_cancelled: a.streams_cancelled + m.streams_cancelled,
                in_flight: a.in_flight + m.in_flight,
            })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelStats {
    /// Every request naming this model, including rejected ones.
    pub requests: u64,
    /// Requests answered with a fault (header, scripted or `error_rate`).
    pub faults_injected: u64,
    /// Streams that sent their terminator.
    pub streams_completed: u64,
    /// Exchanges the client abandoned before the end: streams dropped mid-body, and requests
    /// (non-streaming or `hang`) whose client went away while the sim was still waiting.
    pub streams_cancelled: u64,
    /// Exchanges currently being answered.
    pub in_flight: u64,
}

/// Live counters of one model, plus its resolved profile.
#[derive(Debug)]
pub(crate) struct ModelState {
    hash: u64,
    profile: Resolved,
    requests: AtomicU64,
    faults: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    in_flight: AtomicU64,
}

impl ModelState {
    fn new(name: &str, profile: Resolved) -> Self {
        Self {
            hash: fnv1a(name),
            profile,
            requests: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> ModelStats {
        ModelStats {
            requests: self.requests.load(Ordering::Relaxed),
            faults_injected: self.faults.load(Ordering::Relaxed),
            streams_completed: self.completed.load(Ordering::Relaxed),
            streams_cancelled: self.cancelled.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Shared simulator state: config, per-model counters, scripted faults.
pub struct Sim {
    seed: u64,
    defaults: Resolved,
    /// Model ids from the config, in order, for the `/models` listings.
    configured: Vec<String>,
    models: RwLock<HashMap<Box<str>, Arc<ModelState>>>,
    faults: FaultTable,
    /// Request ids for answers given before an exchange exists (validation errors).
    ids: AtomicU64,
    /// Cancelled on shutdown: ends `hang`s and pending sleeps.
    closing: CancellationToken,
    /// Followed redirects, and those that carried credentials (see `SimStats`).
    redirects: [AtomicU64; 2],
    /// The last request bodies received (path, body), oldest first: what really reached the
    /// "upstream", for tests and `/_sim/requests`.
    recent: std::sync::Mutex<std::collections::VecDeque<RecentRequest>>,
    /// Anthropic prompt-cache prefixes seen, for its usage accounting.
    prompt_cache: prompt_cache::PromptCache,
}

/// How many request bodies the simulator remembers.
pub const RECENT_REQUESTS: usize = 64;

/// A request body the simulator received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentRequest {
    pub path: String,
    pub body: String,
    /// The request's W3C `traceparent` header, when it had one (the gateway's trace tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The HTTP version it came over (`HTTP/1.1`, `HTTP/2.0`): the sim serves both, HTTP/2 as
    /// h2c with prior knowledge.
    pub http_version: String,
}

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Sim> {
        let resolve = |path: &str, model: Option<&Profile>| {
            Resolved::merge(model, &config.defaults).unwrap_or_else(|e| {
                tracing::warn!(%path, error = %e, "invalid sim profile; using built-in zeros");
                Resolved::zero()
            })
        };
        let defaults = resolve("defaults", None);
        let mut models = HashMap::new();
        for (name, profile) in &config.models {
            let resolved = resolve(&format!("models.{name}"), Some(profile));
            models.insert(
                name.as_str().into(),
                Arc::new(ModelState::new(name, resolved)),
            );
        }
        Arc::new(Sim {
            seed: config.seed,
            defaults,
            configured: config.models.keys().cloned().collect(),
            models: RwLock::new(models),
            faults: FaultTable::default(),
            ids: AtomicU64::new(0),
            closing: CancellationToken::new(),
            redirects: [AtomicU64::new(0), AtomicU64::new(0)],
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            prompt_cache: prompt_cache::PromptCache::default(),
        })
    }

    /// All four wire formats and the control API on one router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/openai/v1/chat/completions", post(openai::chat_openai))
            .route("/openai/v1/models", get(openai::models_openai))
            .route("/openai/v1/embeddings", post(embeddings::embeddings_openai))
            .route("/ollama/v1/chat/completions", post(openai::chat_ollama))
            .route("/ollama/v1/embeddings", post(embeddings::embeddings_ollama))
            .route("/ollama/v1/models", get(openai::models_ollama))
            .route("/anthropic/v1/messages", post(anthropic::messages))
            .route("/gemini/v1beta/models/{*rest}", post(gemini::generate))
            .route("/_sim/stats", get(control::stats))
            .route("/_sim/requests", get(control::recent))
            .route("/_sim/redirected", any(control::redirected))
            .route(
                "/_sim/faults",
                post(control::set_fault).delete(control::clear_faults),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                control::remember,
            ))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(Arc::clone(self))
    }

    pub fn stats(&self) -> SimStats {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        SimStats {
            models: models
                .iter()
                .map(|(k, v)| (k.to_string(), v.snapshot()))
                .collect(),
            redirects_followed: self.redirects[0].load(Ordering::Relaxed),
            redirected_credentials: self.redirects[1].load(Ordering::Relaxed),
        }
    }

    /// Scripts `spec` for `model` (`"*"` = every model), replacing any fault scripted for it.
    pub fn set_fault(&self, model: &str, spec: &str, mode: FaultMode) -> Result<(), SimError> {
        let fault: Fault = spec.parse()?;
        self.faults.set(model, fault, mode.validate()?);
        Ok(())
    }

    /// The last request bodies received, oldest first.
    pub fn recent_requests(&self) -> Vec<RecentRequest> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    fn remember(&self, path: &str, body: &[u8], traceparent: Option<&str>, version: http::Version) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_REQUESTS {
            recent.pop_front();
        }
        recent.push_back(RecentRequest {
            path: path.to_owned(),
            body: String::from_utf8_lossy(body).into_owned(),
            traceparent: traceparent.map(str::to_owned),
            http_version: format!("{version:?}"),
        });
    }

    /// Removes every scripted fault; returns how many there were.
    pub fn clear_faults(&self) -> usize {
        self.faults.clear()
    }

    /// The live state of `model`, created with the default profile on first sight.
    fn state(&self, model: &str) -> Arc<ModelState> {
        {
            let models = self.models.read().unwrap_or_else(|p| p.into_inner());
            if let Some(state) = models.get(model) {
                return Arc::clone(state);
            }
        }
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let state = models
            .entry(model.into())
            .or_insert_with(|| Arc::new(ModelState::new(model, self.defaults.clone())));
        Arc::clone(state)
    }
}

/// A sim serving on a socket in the background.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    /// e.g. `http://127.0.0.1:PORT/openai/v1`.
    pub fn base_url(&self, kind: WireFormat) -> String {
        format!("http://{}{}", self.addr, kind.base_path())
    }

    /// Stops accepting, ends `hang`s and pending sleeps, waits briefly for responses in
    /// flight, then aborts the server task.
    pub async fn shutdown(mut self) {
        self.sim.closing.cancel();
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "sim server ended with an error"),
                Ok(_) => {}
                Err(_) => task.abort(),
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.sim.closing.cancel();
        }
    }
}

/// Binds `addr` (port 0 allowed), sets TCP_NODELAY on accepted sockets and serves the sim in
/// the background until `SimHandle::shutdown` (or drop).
pub async fn spawn(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let sim = Sim::new(config);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!(error = %e, "sim: could not set TCP_NODELAY");
        }
    });
    let app = sim.router();
    let closing = sim.closing.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(closing.cancelled_owned())
            .await
    });
    Ok(SimHandle {
        addr,
        sim,
        task: Some(task),
    })
}
