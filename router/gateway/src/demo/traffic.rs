//! Demo traffic (`switchyard demo --traffic[=RPS]`): a gentle stream of chat requests and streams
//! sent over real HTTP to the gateway's own listen address, so the dashboard has something to
//! show. Bodies are random, so only the few temperature-0 prompts are cache hits. Every
//! `FAULT_EVERY` one model of the flaky route (`reliable` in the demo) fails for `FAULT_FOR`
//! through the simulator's fault table, while some requests name that model directly: its
//! errors open its breaker, and the route's requests fail over.
//!
//! Never on unless asked: tests and `switchyard serve` do not start it. Its requests are
//! ordinary requests (logged, counted and billed like any other) marked with the user agent
//! `switchyard-demo-traffic`. `stop` ends it before the server drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::{FaultMode, Sim};
use switchyard_types::rng::SplitMix64;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AuthMode, Config};

/// The rate `--traffic` with no value sends, and the bounds of `--traffic=RPS`.
pub const DEFAULT_RPS: f64 = 5.0;
pub const MAX_RPS: f64 = 200.0;
/// How often a model of the flaky route starts failing, and for how long.
const FAULT_EVERY: Duration = Duration::from_secs(45);
const FAULT_FOR: Duration = Duration::from_secs(10);
/// First fault this long after start, once the page has a baseline.
const FIRST_FAULT: Duration = Duration::from_secs(20);
/// One request's deadline (streams of the demo take about 1 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for requests in flight before dropping them.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The user agent of every traffic request: tells them apart in logs.
pub const USER_AGENT: &str = "switchyard-demo-traffic";

/// Prompts asked with temperature 0: the same few, so they are cache hits after the first.
const CACHED_PROMPTS: [&str; 4] = [
    "What is a circuit breaker?",
    "Explain exponential backoff in one line.",
    "Name three HTTP status codes.",
    "What does p99 latency mean?",
];
/// Words for the random prompts.
const TOPICS: [&str; 12] = [
    "routing", "caching", "budgets", "latency", "tokens", "failover", "streams", "retries",
    "policies", "breakers", "spend", "traces",
];

/// `--traffic=RPS`: a rate within (0, MAX_RPS].
pub fn parse_rps(text: &str) -> Result<f64, String> {
    let rps: f64 = text
        .parse()
        .map_err(|_| format!("--traffic: `{text}` is not a number of requests per second"))?;
    if !(rps.is_finite() && rps > 0.0 && rps <= MAX_RPS) {
        return Err(format!(
            "--traffic: must be above 0 and at most {MAX_RPS} requests per second, got {text}"
        ));
    }
    Ok(rps)
}

/// What the traffic asks for, read from the config.
#[derive(Debug, Clone)]
struct Mix {
    /// Chat routes (no embedding model) and chat models: what `model` names.
    targets: Vec<String>,
    /// The route whose models take turns failing, and its models' (gateway id, upstream id).
    flaky_route: Option<(String, Vec<(String, String)>)>,
}

impl Mix {
    fn from_config(cfg: &Config) -> Self {
        let chat = |id: &str| {
            cfg.models
                .iter()
                .find(|(m, _)| m.as_str() == id)
                .is_some_and(|(_, m)| !m.entry.is_embedding())
        };
        let routes: Vec<&crate::config::RouteConfig> = cfg
            .routes
            .values()
            .filter(|r| r.models.iter().all(|m| chat(m.as_str())))
            .collect();
        let mut targets: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
        targets.extend(
            cfg.models
                .iter()
                .filter(|(_, m)| !m.entry.is_embedding())
                .map(|(id, _)| id.as_str().to_owned()),
        );
        let flaky = routes
            .iter()
            .find(|r| r.name == "reliable")
            .or_else(|| routes.iter().find(|r| r.models.len() > 1))
            .map(|r| {
                let models = r
                    .models
                    .iter()
                    .filter_map(|m| {
                        cfg.models
                            .get(m)
                            .map(|c| (m.as_str().to_owned(), c.upstream.clone()))
                    })
                    .collect();
                (r.name.clone(), models)
            });
        Mix {
            targets,
            flaky_route: flaky,
        }
    }
}

/// Demo traffic running in the background.
pub struct Traffic {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    served: Arc<AtomicU64>,
}

impl Traffic {
    /// Start sending `rps` requests a second to `addr`. Refused when the gateway needs keys
    /// (the demo traffic has none).
    pub fn start(addr: SocketAddr, rps: f64, cfg: &Config, sim: Arc<Sim>) -> Result<Self, String> {
        if cfg.auth.mode() != AuthMode::Open {
            return Err("demo traffic needs [auth] mode = \"open\" (it sends no key)".to_owned());
        }
        let rps = parse_rps(&rps.to_string())?;
        let mix = Mix::from_config(cfg);
        if mix.targets.is_empty() {
            return Err("demo traffic: the config has no chat model".to_owned());
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| format!("demo traffic: cannot build a client: {e}"))?;
        let stop = CancellationToken::new();
        let served = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            url: format!("http://{addr}/v1/chat/completions"),
            client,
            served: Arc::clone(&served),
        };
        let task = tokio::spawn(run(sender, mix, rps, sim, stop.clone()));
        tracing::info!(rps, %addr, "demo traffic started");
        Ok(Traffic { stop, task, served })
    }

    /// Requests answered with a 2xx so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stop sending; wait up to `STOP_GRACE` for requests in flight, then drop them.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "demo traffic ended abnormally");
        }
        let served = self.served.load(Ordering::Relaxed);
        tracing::info!(served, "demo traffic stopped");
    }
}

#[derive(Clone)]
struct Sender {
    url: String,
    client: reqwest::Client,
    served: Arc<AtomicU64>,
}

impl Sender {
    async fn send(self, body: Value) {
        let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
        let result = async {
            let response = self.client.post(&self.url).json(&body).send().await?;
            let status = response.status();
            // Read to the end: a stream is only done at its last event.
            response.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        }
        .await;
        match result {
            Ok(status) if status.is_success() => {
                self.served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => tracing::debug!(%status, stream, "demo traffic request failed"),
            Err(e) => tracing::debug!(error = %e, stream, "demo traffic request failed"),
        }
    }
}

/// The fault schedule: which model fails now, if any.
struct Faults {
    next: Instant,
    until: Option<Instant>,
    turn: usize,
    current: Option<(String, String)>,
}

async fn run(sender: Sender, mix: Mix, rps: f64, sim: Arc<Sim>, stop: CancellationToken) {
    let mut rng = SplitMix64::new(seed());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // At most a few seconds' worth in flight: a stalled gateway is not piled on.
    let max_in_flight = ((rps * 4.0).ceil() as usize).max(8);
    let requests = TaskTracker::new();
    let mut faults = Faults {
        next: Instant::now() + FIRST_FAULT,
        until: None,
        turn: 0,
        current: None,
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        faults.advance(&mix, &sim);
        if requests.len() >= max_in_flight {
            continue;
        }
        let body = next_body(
            &mut rng,
            &mix,
            faults.current.as_ref().map(|c| c.0.as_str()),
        );
        requests.spawn(sender.clone().send(body));
    }
    faults.clear(&sim);
    requests.close();
    if tokio::time::timeout(STOP_GRACE, requests.wait())
        .await
        .is_err()
    {
        tracing::debug!("demo traffic: requests still in flight at stop were dropped");
    }
}

impl Faults {
    fn advance(&mut self, mix: &Mix, sim: &Sim) {
        let now = Instant::now();
        if self.until.is_some_and(|u| now >= u) {
            self.clear(sim);
        }
        let Some((route, models)) = &mix.flaky_route else {
            return;
        };
        if self.until.is_some() || now < self.next || models.is_empty() {
            return;
        }
        let (id, upstream) = models[self.turn % models.len()].clone();
        self.turn += 1;
        if let Err(e) = sim.set_fault(&upstream, "503", FaultMode::Rate(1.0)) {
            tracing::warn!(error = %e, "demo traffic: cannot script a fault");
            return;
        }
        tracing::info!(model = %id, route = %route, secs = FAULT_FOR.as_secs(), "demo traffic: model failing");
        self.current = Some((id, upstream));
        self.until = Some(now + FAULT_FOR);
        self.next = now + FAULT_EVERY;
    }

    /// End the current fault (only the one this traffic scripted).
    fn clear(&mut self, sim: &Sim) {
        if let Some((id, upstream)) = self.current.take() {
            // Rate 0 never fires: the model answers again.
            let _ = sim.set_fault(&upstream, "503", FaultMode::Rate(0.0));
            tracing::info!(model = %id, "demo traffic: model recovered");
        }
        self.until = None;
    }
}

/// The next request: a random target; while a model fails, a quarter of requests name it and a
/// quarter its route.
fn next_body(rng: &mut SplitMix64, mix: &Mix, failing: Option<&str>) -> Value {
    let pick = |rng: &mut SplitMix64, n: usize| (rng.next_u64() % n as u64) as usize;
    let roll = rng.next_f64();
    let model = match (failing, &mix.flaky_route) {
        (Some(model), _) if roll < 0.25 => model.to_owned(),
        (Some(_), Some((route, _))) if roll < 0.5 => route.clone(),
        _ => mix.targets[pick(rng, mix.targets.len())].clone(),
    };
    if rng.next_f64() < 0.2 {
        let prompt = CACHED_PROMPTS[pick(rng, CACHED_PROMPTS.len())];
        return json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
        });
    }
    let a = TOPICS[pick(rng, TOPICS.len())];
    let b = TOPICS[pick(rng, TOPICS.len())];
    let prompt = format!(
        "Demo request {:016x}: how do {a} and {b} interact in an AI gateway?",
        rng.next_u64()
    );
    json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.7,
        "stream": rng.next_f64() < 0.35,
    })
}

/// A seed from the OS: demo traffic is not meant to repeat.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0x5eed;
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_the_bounds_are_refused_naming_the_flag() {
        for bad in ["0", "-1", "NaN", "inf", "201", "fast"] {
            let e = parse_rps(bad).unwrap_err();
            assert!(e.starts_with("--traffic:"), "{bad}: {e}");
        }
        assert_eq!(parse_rps("5").unwrap(), 5.0);
        assert_eq!(parse_rps("0.5").unwrap(), 0.5);
    }

    #[test]
    fn bodies_vary_and_the_failing_model_is_named() {
        let mix = Mix {
            targets: vec!["auto".into(), "m1".into()],
            flaky_route: Some(("reliable".into(), vec![("m2".into(), "m2-up".into())])),
        };
        let mut rng = SplitMix64::new(1);
        let bodies: Vec<Value> = (0..400).map(|_| next_body(&mut rng, &mix, None)).collect();
        let distinct: std::collections::HashSet<String> =
            bodies.iter().map(Value::to_string).collect();
        assert!(distinct.len() > 300, "random bodies: {}", distinct.len());
        assert!(bodies.iter().any(|b| b["stream"] == true));
        assert!(bodies.iter().any(|b| b["temperature"] == 0));
        assert!(bodies.iter().all(|b| b["model"] != "m2"));
        let failing: Vec<Value> = (0..400)
            .map(|_| next_body(&mut rng, &mix, Some("m2")))
            .collect();
        assert!(failing.iter().filter(|b| b["model"] == "m2").count() > 50);
        assert!(failing.iter().filter(|b| b["model"] == "reliable").count() > 50);
    }
}
