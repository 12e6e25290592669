//! One request's ledger: who asked (key), what happened (route, model, attempts, policies,
//! cache), what it used and cost, and where the gateway's own time went (per stage). Created
//! by the admission middleware (`api::admit`), filled in by the pipeline, and *finished*
//! exactly once — when a complete answer is sent, or when a streamed body ends or is dropped —
//! which writes the request log row (to the batched writer, never awaited), the key's spend
//! (to the spend ledger, which never drops) and the metrics.
//!
//! IMPORTANT: an exchange never finished when its last reference goes (the client left and
//! the handler's future was dropped) finishes itself in `Drop`, as `499` with the code
//! `cancelled`, so every request gets exactly one row and its spend is kept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cache::Outcome;
use crate::keys::KeyState;
use crate::telemetry::{Metrics, Stage};
use switchyard_store::{AttemptRecord, Ledger, PolicyRecord, RequestRecord, SpendTotals, Writer};
use switchyard_types::Usage;
use switchyard_types::clock::{ms, now_ms};
use switchyard_types::ids::{ModelId, ProviderId};

#[derive(Debug, Default)]
struct Data {
    route: String,
    /// The request's task tag (`metadata.task`), for quality from feedback.
    task: Option<String>,
    model: Option<ModelId>,
    provider: Option<ProviderId>,
    stream: bool,
    cache: Outcome,
    usage: Usage,
    usage_estimated: bool,
    cost: i64,
    ttft: Option<Duration>,
    attempts: Vec<AttemptRecord>,
    policies: Vec<PolicyRecord>,
    stages: [Duration; 6],
    error_code: Option<String>,
    /// A shadow's row: the id of the request it copies (`pipeline/shadow.rs`).
    shadow_of: Option<String>,
    /// A shadow that does not count against its key: nothing goes to the spend ledger.
    unbilled: bool,
    /// The answer's text, kept for a shadow with `log_text`.
    response_text: Option<String>,
    /// Set when the request's routing decision goes to the live feed (sampled, watched).
    decision: Option<crate::live::decisions::Mark>,
    /// Metadata tags `[log] tags` allows (`crate::tags`), for the spend report.
    tags: BTreeMap<String, String>,
}

/// The status of a request whose client left before its answer was complete (nginx's).
pub const CANCELLED: u16 = 499;

/// Where finished exchanges go: the metrics, the request log, the spend ledger.
pub struct Sinks {
    pub metrics: Metrics,
    pub writer: Option<Writer>,
    pub ledger: Option<Ledger>,
    /// The live feed: a marked exchange publishes its decision there.
    pub live: Arc<crate::live::Live>,
    /// OpenTelemetry traces (`[telemetry.traces]`): a traced exchange's spans go there.
    pub traces: Option<Arc<crate::telemetry::otel::Traces>>,
}

/// See the module docs.
pub struct Exchange {
    /// The row's id: always the server's (`req_…`), so no client can collide with another row.
    pub id: String,
    /// The client's `x-request-id`, kept in its own column and echoed back.
    pub client_id: Option<String>,
    pub endpoint: &'static str,
    pub started: Instant,
    pub ts_ms: i64,
    pub key: Option<Arc<KeyState>>,
    sinks: Arc<Sinks>,
    data: Mutex<Data>,
    finished: AtomicBool,
    /// The request's trace context and span marks, when traces are on (`telemetry::otel`).
    trace: Option<Box<crate::telemetry::otel::Trace>>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    pub fn new(
        client_id: Option<String>,
        endpoint: &'static str,
        key: Option<Arc<KeyState>>,
        sinks: Arc<Sinks>,
    ) -> Exchange {
        Exchange {
            id: switchyard_types::new_id("req_"),
            client_id,
            endpoint,
            started: Instant::now(),
            ts_ms: now_ms(),
            key,
            sinks,
            data: Mutex::default(),
            finished: AtomicBool::new(false),
            trace: None,
        }
    }

    /// This exchange with its trace (`Traces::begin`; `None` when traces are off).
    pub fn traced(mut self, trace: Option<Box<crate::telemetry::otel::Trace>>) -> Exchange {
        self.trace = trace;
        self
    }

    pub fn trace(&self) -> Option<&crate::telemetry::otel::Trace> {
        self.trace.as_deref()
    }

    /// The id the client knows the request by (`x-request-id`): its own, or the row's.
    pub fn public_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.id)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Data) -> R) -> Option<R> {
        self.data.lock().ok().map(|mut d| f(&mut d))
    }

    /// Add time to a stage.
    pub fn stage(&self, stage: Stage, d: Duration) {
        self.with(|data| data.stages[stage as usize] += d);
    }

    /// Time `f` as `stage`.
    pub fn timed<R>(&self, stage: Stage, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.stage(stage, t.elapsed());
        r
    }

    /// The gateway's own time so far (every stage), the `x-switchyard-overhead-ms` figure.
    pub fn overhead(&self) -> Duration {
        self.with(|d| d.stages.iter().sum()).unwrap_or_default()
    }

    /// The key's scope for the cache (`""` when no key was presented, in `open` mode).
    pub fn scope(&self) -> &str {
        self.key.as_ref().map_or("", |k| k.id())
    }

    pub fn set_route(&self, route: &str, stream: bool) {
        self.with(|d| {
            route.clone_into(&mut d.route);
            d.stream = stream;
        });
    }

    pub fn set_task(&self, task: Option<&str>) {
        self.with(|d| d.task = task.map(str::to_owned));
    }

    /// This exchange is the shadow of request `of`: its row says so, the request metrics leave
    /// it out (the shadow families count it), and unless `billed` its cost is not the key's.
    pub fn shadow_of(&self, of: &str, billed: bool) {
        self.with(|d| {
            d.shadow_of = Some(of.to_owned());
            d.unbilled = !billed;
        });
    }

    /// Adds the request's tags. A name already set to another value (the header and the body
    /// disagree) is refused: `Err` names it, and nothing is added.
    pub fn add_tags(&self, tags: BTreeMap<String, String>) -> Result<(), String> {
        self.with(|d| {
            if let Some((name, _)) = tags
                .iter()
                .find(|(k, v)| d.tags.get(*k).is_some_and(|old| old != *v))
            {
                return Err(name.clone());
            }
            d.tags.extend(tags);
            Ok(())
        })
        .unwrap_or(Ok(()))
    }

    pub fn set_response_text(&self, text: String) {
        self.with(|d| d.response_text = Some(text));
    }

    /// The request's routing decision is to be sent to the live feed when it finishes.
    pub fn decided(&self, mark: crate::live::decisions::Mark) {
        self.with(|d| d.decision = Some(mark));
    }

    pub fn set_cache(&self, outcome: Outcome) {
        self.with(|d| d.cache = outcome);
    }

    /// The client left: say so, unless a more specific error is already recorded.
    pub fn cancelled(&self) {
        self.with(|d| {
            d.error_code.get_or_insert_with(|| "cancelled".to_owned());
        });
    }

    pub fn set_error(&self, code: Option<&str>) {
        self.with(|d| d.error_code = code.map(str::to_owned));
    }

    /// Who answered, after which attempts and policies.
    pub fn routed(
        &self,
        model: &ModelId,
        provider: &ProviderId,
        attempts: Vec<AttemptRecord>,
        policies: Vec<PolicyRecord>,
    ) {
        self.with(|d| {
            d.model = Some(model.clone());
            d.provider = Some(provider.clone());
            d.attempts.extend(attempts);
            d.policies.extend(policies);
        });
    }

    pub fn first_token(&self, ttft: Duration) {
        self.with(|d| {
            d.ttft.get_or_insert(ttft);
        });
    }

    /// What an answer used and cost (summed when one request makes several calls).
    pub fn answered(&self, usage: &Usage, cost: i64, estimated: bool) {
        self.with(|d| {
            d.usage.add(usage);
            d.cost += cost;
            d.usage_estimated |= estimated;
        });
    }

    pub fn cost(&self) -> i64 {
        self.with(|d| d.cost).unwrap_or(0)
    }

    /// Write the log row and the spend (when there is a store) and the metrics, once. `status`
    /// is what the client got.
    pub fn finish(&self, status: u16) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let t = Instant::now();
        let Some(d) = self.data.lock().ok().map(|mut d| std::mem::take(&mut *d)) else {
            return;
        };
        let latency = self.started.elapsed();
        let mut stages = d.stages;
        let details = d.usage.prompt_tokens_details.unwrap_or_default();
        let (shadow, unbilled) = (d.shadow_of.is_some(), d.unbilled);
        let decision = d.decision;
        let row = RequestRecord {
            id: self.id.clone(),
            client_request_id: self.client_id.clone(),
            ts_ms: self.ts_ms,
            key_id: self.key.as_ref().map(|k| k.id().to_owned()),
            endpoint: self.endpoint.to_owned(),
            route: d.route.clone(),
            task: d.task.clone(),
            model: d.model.as_ref().map(|m| m.to_string()),
            provider: d.provider.as_ref().map(|p| p.to_string()),
            status,
            error_code: d.error_code.clone(),
            stream: d.stream,
            cache: d.cache.as_str().to_owned(),
            prompt_tokens: d.usage.prompt_tokens,
            completion_tokens: d.usage.completion_tokens,
            cached_tokens: details.cached_tokens,
            reasoning_tokens: d
                .usage
                .completion_tokens_details
                .map_or(0, |c| c.reasoning_tokens),
            usage_estimated: d.usage_estimated,
            cost_picousd: d.cost,
            latency_ms: ms(latency),
            ttft_ms: d.ttft.map(ms),
            overhead_ms: ms(stages.iter().sum()),
            shadow_of: d.shadow_of,
            response_text: d.response_text,
            tags: d.tags,
            billed: !unbilled,
            attempts: d.attempts,
            policies: d.policies,
        };
        let sinks = &*self.sinks;
        let metrics = &sinks.metrics;
        if !shadow {
            metrics.request(self.endpoint, d.cache.as_str(), &row, latency, d.ttft);
        }
        if !unbilled && let (Some(key), Some(ledger)) = (&self.key, &sinks.ledger) {
            ledger.add(
                key.id(),
                key.period.start(self.ts_ms),
                SpendTotals {
                    cost_picousd: row.cost_picousd,
                    requests: 1,
                    prompt_tokens: i64::from(row.prompt_tokens),
                    completion_tokens: i64::from(row.completion_tokens),
                },
            );
        }
        if let Some(mark) = decision
            && !shadow
            && sinks.live.has_subscribers()
        {
            let event = crate::live::Event::Decision(mark.event(&row));
            sinks.live.publish(event);
        }
        if let (Some(trace), Some(traces)) = (&self.trace, &sinks.traces) {
            traces.export(trace, &row);
        }
        if let Some(w) = &sinks.writer {
            w.record(row);
        }
        stages[Stage::Record as usize] = t.elapsed();
        // A shadow's time is not the gateway's overhead on any client's request.
        for s in Stage::ALL.into_iter().filter(|_| !shadow) {
            // Stages a request never reached are not observed (a cache hit has no policy time
            // only when the route has no policies; zero is then a real figure and is observed).
            metrics.stage(s, stages[s as usize]);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        self.cancelled();
        tracing::debug!(id = %self.id, "request cancelled by the client");
        self.finish(CANCELLED);
    }
}

tokio::task_local! {
    /// The exchange of the request being handled: set by the admission middleware around the
    /// handler, read by the pipeline (so analyst endpoints and batches need no plumbing).
    static CURRENT: Arc<Exchange>;
}

/// The current request's exchange, if the code runs inside a handler.
pub fn current() -> Option<Arc<Exchange>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// `f` on the current request's exchange, without taking a reference to it.
pub fn with_current<R>(f: impl FnOnce(&Exchange) -> R) -> Option<R> {
    CURRENT.try_with(|ex| f(ex)).ok()
}

/// Run `f` with `ex` as the current exchange.
pub async fn scope<F: std::future::Future>(ex: Arc<Exchange>, f: F) -> F::Output {
    CURRENT.scope(ex, f).await
}
