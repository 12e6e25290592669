//! Shadow traffic: a route's `shadow = { model, sample, log_text, bill }` sends a copy of a
//! sampled request — as the real one was sent upstream, after policies — to another model once
//! the real answer is out (a complete answer: once it is produced; a stream: once it ends). The
//! shadow's answer is discarded; its latency, tokens, cost and (with `log_text`) text are logged
//! in a row of its own whose `shadow_of` is the real request's id, written by the same
//! `Exchange::finish` as every row.
//!
//! IMPORTANT: a shadow never delays or fails the real request. It is spawned, its errors are
//! only logged and counted, it skips the cache, and it is the first thing dropped under load:
//! at most `Shadows::new`'s permits are in flight, and a shadow that cannot take one at once is
//! dropped (`switchyard_shadow_dropped_total`); so is every shadow while more than 3/4 of
//! `server.max_in_flight` requests are in flight, when it is sampled and again when it would
//! start — long before the gateway itself sheds requests. One attempt, no retries, the real
//! route's deadlines; shutdown's abort cancels it. Only with `bill = true` does it reserve the
//! key's budget (refused at once rather than waiting) and add to the key's spend, through the
//! same reservation and ledger as the key's own requests.

use std::collections::HashMap;

use futures::StreamExt;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Config;
use crate::exchange::Sinks;
use crate::execute::{PumpLimits, Upstreams};
use crate::keys::Keys;
use switchyard_providers::Provider;
use switchyard_routing::health::{Health, RetryBudget};
use switchyard_routing::quality::Quality;
use switchyard_routing::route::Shadow;

/// The most of a shadow's answer text its row keeps, in bytes (cut on a character boundary).
pub const MAX_TEXT_BYTES: usize = 32 * 1024;

/// Shadows are dropped while more than `LOAD_NUM / LOAD_DEN` of `server.max_in_flight` requests
/// are in flight.
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

/// Whether the gateway is under load: more than 3/4 of `max_in_flight` requests in flight, by
/// the shed limit's own count (`switchyard_in_flight_requests`, the request asking included).
fn loaded(in_flight: &Gauge, max_in_flight: usize) -> bool {
    let n = usize::try_from(in_flight.get()).unwrap_or(0);
    n.saturating_mul(LOAD_DEN) > max_in_flight.saturating_mul(LOAD_NUM)
}

/// What the explanation (`routing.shadow`) says about a route's shadow for one request: present
/// on every request of a route with a shadow, sampled or not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowNote {
    /// The shadow model.
    pub model: ModelId,
    /// The route's share of requests sampled.
    pub sample: f64,
    /// Whether this request was drawn for a copy.
    pub sampled: bool,
    /// Sampled, but dropped at once: `load` (more than 3/4 of `server.max_in_flight` requests in
    /// flight) or `pool_full` (as many shadows in flight as the pool holds). A sampled shadow
    /// without `dropped` is sent once the answer is out, unless load has grown by then, or the
    /// shadow model gave the real answer itself (see `switchyard_shadow_*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<&'static str>,
}

/// The pool of shadows in flight, shared by every route.
#[derive(Debug)]
pub struct Shadows {
    permits: Arc<Semaphore>,
}

impl Shadows {
    /// A pool of `server.max_in_flight / 64` shadows (at least 1; 16 with the default 1024).
    pub fn new(max_in_flight: usize) -> Shadows {
        Shadows {
            permits: Arc::new(Semaphore::new((max_in_flight / 64).max(1))),
        }
    }

    /// Permits free now (how many more shadows may start).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// A sampled request's shadow, waiting for the real answer.
pub(super) struct Pending {
    permits: Arc<Semaphore>,
    job: Job,
}

/// Everything a shadow needs once spawned: owned, so it outlives the request.
struct Job {
    config: Arc<Config>,
    health: Arc<Health>,
    quality: Arc<Quality>,
    provider: (ProviderId, Provider),
    keys: Arc<Keys>,
    sinks: Arc<Sinks>,
    abort: CancellationToken,
    write_stall: Duration,
    /// One attempt at the shadow model, with the real route's deadlines.
    route: RouteConfig,
    /// The real route's name (the shadow row's `route`).
    route_name: String,
    settings: Shadow,
    request: ChatRequest,
    /// The real request's row id.
    of: String,
    endpoint: &'static str,
    key: Option<Arc<KeyState>>,
}

impl Pending {
    /// A shadow for this request, if its route has one and the draw samples it (none without an
    /// exchange: a shadow must name the row it copies), and what the explanation says of it.
    pub(super) fn sample(
        gw: &Gateway,
        route: &RouteConfig,
        request: &ChatRequest,
        ex: Option<&Arc<Exchange>>,
    ) -> (Option<Pending>, Option<ShadowNote>) {
        let Some(settings) = route.shadow.as_ref() else {
            return (None, None);
        };
        let mut note = ShadowNote {
            model: settings.model.clone(),
            sample: settings.sample,
            sampled: false,
            dropped: None,
        };
        let Some(ex) = ex else {
            return (None, Some(note));
        };
        if !(settings.sample >= 1.0 || super::split::uniform() < settings.sample) {
            return (None, Some(note));
        }
        note.sampled = true;
        // Dropped now, before the request is copied.
        if loaded(&gw.sinks.metrics.in_flight, gw.config.server.max_in_flight) {
            note.dropped = Some("load");
        } else if gw.shadows.available() == 0 {
            note.dropped = Some("pool_full");
        }
        if note.dropped.is_some() {
            gw.sinks.metrics.shadow.dropped(&route.name);
            return (None, Some(note));
        }
        let pending = Self::job(gw, route, settings, request, ex);
        (pending, Some(note))
    }

    fn job(
        gw: &Gateway,
        route: &RouteConfig,
        settings: &Shadow,
        request: &ChatRequest,
        ex: &Arc<Exchange>,
    ) -> Option<Pending> {
        let model = gw.config.models.get(&settings.model)?;
        let provider = gw.providers.get(&model.provider)?.clone();
        Some(Pending {
            permits: gw.shadows.permits.clone(),
            job: Job {
                config: gw.config.clone(),
                health: gw.health.clone(),
                quality: gw.quality.clone(),
                provider: (model.provider.clone(), provider),
                keys: gw.keys.clone(),
                sinks: gw.sinks.clone(),
                abort: gw.abort.clone(),
                write_stall: gw.config.server.write_stall,
                route: shadow_route(route, &settings.model),
                route_name: route.name.clone(),
                settings: settings.clone(),
                request: request.clone(),
                of: ex.id.clone(),
                endpoint: ex.endpoint,
                key: ex.key.clone(),
            },
        })
    }

    /// The real answer is out (`answered_by` gave it): start the shadow, or drop it under load
    /// (too many requests in flight, or the pool full). Never waits.
    pub(super) fn launch(self, answered_by: &ModelId) {
        let metrics = &self.job.sinks.metrics.shadow;
        let route = &self.job.route_name;
        if *answered_by == self.job.settings.model {
            // Comparing a model with itself says nothing.
            metrics.outcome(route, "same_model");
            return;
        }
        if self.job.abort.is_cancelled() {
            metrics.outcome(route, "shutdown");
            return;
        }
        let max_in_flight = self.job.config.server.max_in_flight;
        if loaded(&self.job.sinks.metrics.in_flight, max_in_flight) {
            metrics.dropped(route);
            return;
        }
        let Ok(permit) = self.permits.try_acquire_owned() else {
            metrics.dropped(route);
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(self.job.run(permit));
            }
            Err(_) => metrics.outcome(route, "shutdown"),
        }
    }
}

/// The route a shadow runs on: its model alone, one attempt, the real route's deadlines.
fn shadow_route(real: &RouteConfig, model: &ModelId) -> RouteConfig {
    let mut r = RouteConfig::single(model.clone());
    r.max_attempts = 1;
    r.retry.max_per_model = 0;
    r.ttft = real.ttft;
    r.idle = real.idle;
    r.attempt = real.attempt;
    r.total = real.total;
    r.stream_total = real.stream_total;
    r
}

impl Job {
    async fn run(self, permit: OwnedSemaphorePermit) {
        let sinks = self.sinks.clone();
        let route = self.route_name.clone();
        let abort = self.abort.clone();
        let outcome = tokio::select! {
            outcome = self.call() => outcome,
            () = abort.cancelled() => "shutdown",
        };
        drop(permit);
        sinks.metrics.shadow.outcome(&route, outcome);
    }

    /// Decide, reserve (with `bill`), call, log; the outcome's label.
    async fn call(self) -> &'static str {
        let prefs = Preferences {
            weights: self.route.weights,
            max_cost_usd: None,
            max_latency_ms: None,
            defer_context: false,
        };
        let decision = candidates::decide(
            &self.config.models,
            &self.health,
            &self.quality,
            &self.route,
            &self.route.models,
            &self.request,
            &prefs,
            Instant::now(),
        );
        let Some(c) = decision.chosen().cloned() else {
            return "filtered";
        };
        let entry = self
            .config
            .models
            .get(&self.settings.model)
            .map(|m| m.entry.clone());
        let est = super::charge::estimate_with(&decision, &self.request, |m| {
            self.config.models.get(m).map(|m| &m.entry)
        });
        let reservation = match (&self.key, self.settings.bill) {
            (Some(key), true) => {
                match self
                    .keys
                    .reserve(key, est.cost, est.tokens, Duration::ZERO)
                    .await
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::debug!(of = %self.of, error = %e, "shadow refused by the key's limits");
                        return "refused";
                    }
                }
            }
            _ => None,
        };
        let ex = Arc::new(Exchange::new(
            None,
            self.endpoint,
            self.key.clone(),
            self.sinks.clone(),
        ));
        ex.shadow_of(&self.of, self.settings.bill);
        ex.set_route(&self.route_name, self.request.stream);
        let providers = HashMap::from([self.provider.clone()]);
        // Never drawn on: a shadow makes one attempt.
        let retry_budget = RetryBudget::new(0.0, 0, Duration::from_secs(10));
        let hedge_budgets = HashMap::new();
        let up = Upstreams {
            models: &self.config.models,
            health: &self.health,
            providers: &providers,
            retry_budget: &retry_budget,
            hedge_budgets: &hedge_budgets,
        };
        let call = Call {
            job: &self,
            ex: &ex,
            decision: &decision,
            entry,
            prompt_tokens: c.prompt_tokens,
        };
        if self.request.stream {
            call.streamed(up, reservation, &est).await
        } else {
            call.complete(up, reservation, &est).await
        }
    }
}

/// One shadow call under way.
struct Call<'a> {
    job: &'a Job,
    ex: &'a Arc<Exchange>,
    decision: &'a Decision,
    entry: Option<CatalogEntry>,
    prompt_tokens: u32,
}

impl Call<'_> {
    async fn complete(
        self,
        up: Upstreams<'_>,
        reservation: Option<Reservation>,
        est: &super::charge::Estimate,
    ) -> &'static str {
        let (job, ex) = (self.job, self.ex);
        let in_flight = InFlight::new(reservation, Some(ex.clone()), est.cost, est.usage);
        let result = execute::complete(up, &job.route, self.decision, &job.request).await;
        let mut reservation = in_flight.done();
        match result {
            Ok(mut s) => {
                super::settle_answer(
                    &mut s,
                    &job.request,
                    self.decision,
                    self.entry.as_ref(),
                    reservation,
                    Some(ex),
                    Vec::new(),
                );
                if job.settings.log_text {
                    ex.set_response_text(cut(answer_text(&s.value)));
                }
                ex.finish(200);
                "ok"
            }
            Err(f) => {
                settle_failed(reservation.take(), Some(ex), &f.attempts);
                self.failed(f)
            }
        }
    }

    async fn streamed(
        self,
        up: Upstreams<'_>,
        reservation: Option<Reservation>,
        est: &super::charge::Estimate,
    ) -> &'static str {
        let (job, ex) = (self.job, self.ex);
        let in_flight = InFlight::new(
            reservation,
            Some(ex.clone()),
            est.prompt_cost,
            est.prompt_usage,
        );
        let result = execute::streamed(up, &job.route, self.decision, &job.request).await;
        let mut reservation = in_flight.done();
        let s = match result {
            Ok(s) => s,
            Err(f) => {
                settle_failed(reservation.take(), Some(ex), &f.attempts);
                return self.failed(f);
            }
        };
        let billed = charge_failed_attempts(Some(ex), &s.attempts);
        ex.routed(
            &s.model,
            &s.provider,
            attempt_records(&s.attempts),
            Vec::new(),
        );
        ex.first_token(s.latency);
        // The tap settles the reservation and fills the exchange when the stream ends, as for
        // any stream; nothing is cached.
        let tap = Tap {
            exchange: Some(ex.clone()),
            reservation,
            entry: self.entry.clone(),
            model: s.model.clone(),
            provider: s.provider.clone(),
            prompt_tokens: self.prompt_tokens,
            acc: StreamAccumulator::default(),
            store: None,
            finished: false,
            cut: None,
            billed,
            after: None,
        };
        let limits = PumpLimits {
            write_stall: job.write_stall,
            abort: job.abort.clone(),
        };
        let primed = tap.wrap(s.value, limits);
        let mut text = job.settings.log_text.then(String::new);
        let mut keep = |e: &StreamEvent| {
            if let (Some(t), StreamEvent::Content(piece)) = (text.as_mut(), e)
                && t.len() < MAX_TEXT_BYTES
            {
                t.push_str(piece);
            }
        };
        primed.head.iter().for_each(&mut keep);
        let mut tail = primed.tail;
        let mut clean = true;
        while let Some(item) = tail.next().await {
            match item {
                Ok(e) => keep(&e),
                Err(_) => clean = false,
            }
        }
        if let Some(t) = text {
            ex.set_response_text(cut(t));
        }
        ex.finish(200);
        if clean { "ok" } else { "error" }
    }

    /// The shadow's one attempt failed: its row gets the upstream's status (502 when there was
    /// none, 504 for a timeout) and the attempt's outcome as its error code.
    fn failed(self, f: Failure) -> &'static str {
        let last = f.attempts.last();
        let status = last.and_then(|a| a.status).unwrap_or(match last {
            Some(a) if a.outcome == "timeout" => 504,
            _ => 502,
        });
        let code = last.map(|a| a.outcome);
        let error = failed(f, Some(self.ex), &self.job.health);
        tracing::debug!(of = %self.job.of, error = %error, "shadow request failed");
        self.ex.set_error(code);
        self.ex.finish(status);
        "error"
    }
}

/// A complete answer's text: the first choice's content, then its tool calls.
fn answer_text(r: &ChatResponse) -> String {
    let Some(choice) = r.choices.first() else {
        return String::new();
    };
    let mut out = choice.message.text();
    for call in choice.message.tool_calls() {
        out.push_str(&format!(
            "\n[tool call] {} {}",
            call.function.name, call.function.arguments
        ));
    }
    out
}

/// `text` cut to `MAX_TEXT_BYTES` on a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let c = cut(long);
        assert!(c.len() <= MAX_TEXT_BYTES && c.len() >= MAX_TEXT_BYTES - 1);
        assert!(c.chars().all(|ch| ch == 'é'));
        assert_eq!(cut("short".into()), "short");
    }

    #[test]
    fn load_is_more_than_three_quarters_of_max_in_flight() {
        let g = Gauge::default();
        g.set(6);
        assert!(!loaded(&g, 8));
        g.set(7);
        assert!(loaded(&g, 8));
        g.set(768);
        assert!(!loaded(&g, 1024));
        g.set(769);
        assert!(loaded(&g, 1024));
        g.set(-1);
        assert!(!loaded(&g, 1));
    }

    #[test]
    fn the_pool_is_a_share_of_max_in_flight() {
        assert_eq!(Shadows::new(1024).available(), 16);
        assert_eq!(Shadows::new(64).available(), 1);
        assert_eq!(Shadows::new(1).available(), 1);
    }
}
