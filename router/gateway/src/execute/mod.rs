//! Execute: the attempt loop. Try the ranked candidates in order — retrying a model after a
//! retryable failure (full-jitter backoff, `retry-after` honoured, bounded by a retry budget),
//! then falling back to the next candidate, preferring another provider — within the route's
//! attempt count and deadlines. Every attempt updates the model's health.
//!
//! IMPORTANT: a streamed answer is returned only once its first content token has arrived
//! (`stream::prime`); until then a failure is just a failed attempt and the next candidate is
//! tried — the client never sees it. After that, failures can only be reported in-stream, and
//! the pipeline hands the rest of the stream to a pump (`pump.rs`) that reads it whatever the
//! client does.
//!
//! Deadlines: a complete answer is bounded per attempt (`attempt`) and in all (`total`); a
//! stream by its first token (`ttft`) and the gaps between chunks (`idle`), and in all only
//! when the route sets `total_ms` (`RouteConfig::total_for`).

mod hedge;
mod pump;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

pub use hedge::HedgeReport;
pub use pump::{CHANNEL_EVENTS, Ended, Observer, PumpLimits, pump};
pub use stream::{Primed, prime};

use crate::config::{ModelConfig, RouteConfig};
use switchyard_providers::{Call, ErrorKind, Provider, ProviderError};
use switchyard_routing::candidates::{Candidate, Decision};
use switchyard_routing::catalog::CatalogEntry;
use switchyard_routing::health::{Admission, Health, ModelHealth, RetryBudget, retry_delay};
use switchyard_types::clock::ms;
use switchyard_types::ids::{ModelId, ProviderId};
use switchyard_types::rng::SplitMix64;
use switchyard_types::{ChatRequest, ChatResponse, Usage};

/// One attempt, for the `routing` object and the logs.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub model: ModelId,
    pub provider: ProviderId,
    /// `ok`, or the error kind's label (`server_error`, `timeout`, …), or `skipped`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A failed attempt the provider may have billed (it timed out, or its answer was cut or
    /// malformed: the request reached the model): its prompt, estimated, and that cost.
    #[serde(skip)]
    pub charged: Option<(Usage, i64)>,
}

/// What failed attempts the provider may have billed cost: their usage and picodollars.
pub fn charged(attempts: &[Attempt]) -> Option<(Usage, i64)> {
    attempts
        .iter()
        .filter_map(|a| a.charged)
        .reduce(|(mut u, c), (u2, c2)| {
            u.add(&u2);
            (u, c + c2)
        })
}

impl Attempt {
    fn of(model: &ModelConfig, outcome: &'static str, status: Option<u16>, took: Duration) -> Self {
        Attempt {
            model: model.id.clone(),
            provider: model.provider.clone(),
            outcome,
            status,
            latency_ms: ms(took),
            detail: None,
            charged: None,
        }
    }
}

/// How many of `attempts` called an upstream: skipped candidates did not, nor did those whose
/// provider cannot express the request (`unsupported` is refused before anything is sent).
pub fn upstream_calls(attempts: &[Attempt]) -> usize {
    attempts
        .iter()
        .filter(|a| !matches!(a.outcome, "skipped" | "unsupported"))
        .count()
}

/// What a successful run produced.
pub struct Success<T> {
    pub value: T,
    pub model: ModelId,
    pub provider: ProviderId,
    pub attempts: Vec<Attempt>,
    /// Time to the answer (non-streaming) or to its first token (streaming).
    pub latency: Duration,
    /// Whether a hedge was considered, fired and won, and why (hedged routes only).
    pub hedge: Option<HedgeReport>,
}

/// Why a run failed: the last upstream error (if any attempt was made) and every attempt.
#[derive(Debug)]
pub struct Failure {
    pub last: Option<(ModelId, ProviderError)>,
    pub attempts: Vec<Attempt>,
    /// The last error may not be retried elsewhere (a request the upstream found invalid).
    pub fail_fast: bool,
}

/// What one attempt does; implemented for complete and streamed answers.
trait Mode {
    type Output;
    const STREAM: bool;
    async fn attempt(
        &self,
        provider: &Provider,
        entry: &CatalogEntry,
        call: Call<'_>,
        health: &Arc<ModelHealth>,
        route: &RouteConfig,
        deadline: Option<Instant>,
    ) -> Result<(Self::Output, Duration), ProviderError>;
}

/// `limit`, or less if the request's deadline comes first.
fn within(limit: Duration, deadline: Option<Instant>, now: Instant) -> Duration {
    deadline.map_or(limit, |d| limit.min(d.saturating_duration_since(now)))
}

struct Complete;
struct Streamed;

impl Mode for Complete {
    type Output = ChatResponse;
    const STREAM: bool = false;
    async fn attempt(
        &self,
        provider: &Provider,
        entry: &CatalogEntry,
        call: Call<'_>,
        health: &Arc<ModelHealth>,
        route: &RouteConfig,
        deadline: Option<Instant>,
    ) -> Result<(ChatResponse, Duration), ProviderError> {
        let started = Instant::now();
        let limit = within(route.attempt, deadline, started);
        let _in_flight = health.start();
        let response = match tokio::time::timeout(limit, provider.chat(call)).await {
            Ok(r) => r?,
            Err(_) => return Err(timeout_error("answer", limit)),
        };
        let elapsed = started.elapsed();
        let now = Instant::now();
        health.record_success(now, elapsed, elapsed, response.usage.completion_tokens);
        let u = &response.usage;
        health.record_usage(
            now,
            u.prompt_tokens,
            u.completion_tokens,
            entry.usage_cost(u),
        );
        Ok((response, elapsed))
    }
}

impl Mode for Streamed {
    type Output = Primed;
    const STREAM: bool = true;
    async fn attempt(
        &self,
        provider: &Provider,
        entry: &CatalogEntry,
        call: Call<'_>,
        health: &Arc<ModelHealth>,
        route: &RouteConfig,
        deadline: Option<Instant>,
    ) -> Result<(Primed, Duration), ProviderError> {
        let started = Instant::now();
        let limit = within(route.ttft, deadline, started);
        let in_flight = health.start();
        let opened = async {
            let events = provider.chat_stream(call).await?;
            prime(events).await
        };
        let primed = match tokio::time::timeout(limit, opened).await {
            Ok(r) => r?,
            Err(_) => return Err(timeout_error("first token", limit)),
        };
        let ttft = started.elapsed();
        // From here the stream records its own end (success, failure or abandonment).
        let primed = stream::watch(
            primed,
            stream::Watch {
                health: health.clone(),
                in_flight,
                entry: entry.clone(),
                started,
                idle: route.idle,
                deadline,
            },
        );
        Ok((primed, ttft))
    }
}

/// Whether the provider may bill a failed attempt: the request reached the model (it timed out
/// waiting, or an answer started and was cut or unreadable). An error status or a redirect
/// (never followed) is not billed.
fn may_be_billed(err: &ProviderError) -> bool {
    matches!(
        err.kind,
        ErrorKind::Timeout | ErrorKind::StreamCut | ErrorKind::MalformedResponse
    ) && !err.status.is_some_and(|s| (300..400).contains(&s))
}

fn timeout_error(what: &str, limit: Duration) -> ProviderError {
    ProviderError::new(
        ErrorKind::Timeout,
        format!("no {what} within {} ms", limit.as_millis()),
    )
}

/// What the attempt loop may touch: the configured models, their live health, the providers that
/// serve them and the gateway-wide retry budget. Nothing else of the gateway.
#[derive(Clone, Copy)]
pub struct Upstreams<'a> {
    pub models: &'a BTreeMap<ModelId, ModelConfig>,
    pub health: &'a Health,
    pub providers: &'a HashMap<ProviderId, Provider>,
    pub retry_budget: &'a RetryBudget,
    /// Per hedged route, its hedge budget.
    pub hedge_budgets: &'a HashMap<String, RetryBudget>,
}

/// Run a complete (non-streaming) request over the decision's candidates.
pub async fn complete(
    up: Upstreams<'_>,
    route: &RouteConfig,
    decision: &Decision,
    request: &ChatRequest,
) -> Result<Success<ChatResponse>, Failure> {
    run(up, route, decision, request, &Complete).await
}

/// Run a streaming request: returns once some candidate's first token has arrived.
pub async fn streamed(
    up: Upstreams<'_>,
    route: &RouteConfig,
    decision: &Decision,
    request: &ChatRequest,
) -> Result<Success<Primed>, Failure> {
    run(up, route, decision, request, &Streamed).await
}

async fn run<M: Mode>(
    up: Upstreams<'_>,
    route: &RouteConfig,
    decision: &Decision,
    request: &ChatRequest,
    mode: &M,
) -> Result<Success<M::Output>, Failure> {
    let start = Instant::now();
    let deadline = route.total_for(M::STREAM).map(|t| start + t);
    let budget = up.retry_budget;
    budget.deposit(start);
    let hedging = route.hedge.zip(up.hedge_budgets.get(&route.name));
    if let Some((_, hedge_budget)) = hedging {
        hedge_budget.deposit(start);
    }
    let mut hedge_report: Option<HedgeReport> = None;
    let mut queue: Vec<&Candidate> = decision.eligible().iter().collect();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut last: Option<(ModelId, ProviderError)> = None;
    let mut avoid: Option<ProviderId> = None;
    // Backoff jitter: a sequence seeded from the clock (no RNG state shared between requests).
    let mut jitter = SplitMix64::new(switchyard_types::unix_nanos());
    // Skipped candidates (breaker open, cooling down) are not attempts: only upstream calls count.
    let room = |attempts: &[Attempt]| upstream_calls(attempts) < route.max_attempts as usize;

    while !queue.is_empty() && room(&attempts) {
        // Prefer a provider other than the one that just failed: its outage is often shared.
        let next = avoid
            .as_ref()
            .and_then(|p| queue.iter().position(|c| &c.provider != p))
            .unwrap_or(0);
        let candidate = queue.remove(next);
        let Some(first) = Contender::of(up, candidate) else {
            continue;
        };
        let model = first.model;
        let health = first.health;
        let mut retries_here = 0;
        loop {
            let now = Instant::now();
            let past = deadline.is_some_and(|d| now >= d);
            if past || !room(&attempts) {
                break;
            }
            if let Admission::Rejected(why) = health.admit(now) {
                let mut skipped = Attempt::of(model, "skipped", None, Duration::ZERO);
                skipped.detail = Some(why.describe());
                attempts.push(skipped);
                break;
            }
            let began = Instant::now();
            // The request's first upstream call on a hedged route may race a second one.
            let hedge_now = hedging.filter(|_| {
                hedge_report.is_none() && upstream_calls(&attempts) == 0 && route.max_attempts >= 2
            });
            let result = match hedge_now {
                Some((h, hedge_budget)) => {
                    let race = hedge::Race {
                        up,
                        mode,
                        route,
                        request,
                        deadline,
                        hedge: h,
                        budget: hedge_budget,
                    };
                    match race.run(&first, &mut queue, &mut attempts).await {
                        hedge::Raced::Single(result, report) => {
                            hedge_report = report;
                            result
                        }
                        hedge::Raced::Won(won, report) => {
                            return Ok(Success {
                                value: won.value,
                                model: won.model,
                                provider: won.provider,
                                attempts,
                                latency: start.elapsed(),
                                hedge: Some(report),
                            });
                        }
                        hedge::Raced::Failed(report, failed) => {
                            hedge_report = Some(report);
                            let fail_fast = failed.fail_fast;
                            last = Some(failed.last);
                            if fail_fast {
                                return Err(Failure {
                                    last,
                                    attempts,
                                    fail_fast: true,
                                });
                            }
                            avoid = Some(model.provider.clone());
                            break;
                        }
                    }
                }
                None => first.attempt(mode, request, route, deadline).await,
            };
            match result {
                Ok((value, latency)) => {
                    attempts.push(Attempt::of(model, "ok", None, latency));
                    return Ok(Success {
                        value,
                        model: model.id.clone(),
                        provider: model.provider.clone(),
                        attempts,
                        latency: start.elapsed(),
                        hedge: hedge_report,
                    });
                }
                Err(err) => {
                    attempts.push(first.failed(&err, began.elapsed()));
                    if !err.kind.allows_fallback() {
                        return Err(Failure {
                            last: Some((model.id.clone(), err)),
                            attempts,
                            fail_fast: true,
                        });
                    }
                    let now = Instant::now();
                    let delay = retry_delay(
                        &err,
                        retries_here,
                        Duration::from_millis(route.retry.base_ms),
                        Duration::from_millis(route.retry.cap_ms),
                        &mut || jitter.next_f64(),
                    );
                    // Retry this model only after a wait no longer than the backoff cap (a
                    // longer retry-after is the client's to wait out, or another model's turn),
                    // while it still fits before the deadline, and as far as the shared budget
                    // allows (no retry storms).
                    let retry_here = err.retryable
                        && retries_here < route.retry.max_per_model
                        && delay <= Duration::from_millis(route.retry.cap_ms)
                        && deadline.is_none_or(|d| now + delay < d)
                        && budget.try_withdraw(now);
                    last = Some((model.id.clone(), err));
                    if retry_here {
                        retries_here += 1;
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    avoid = Some(model.provider.clone());
                    break;
                }
            }
        }
    }
    Err(Failure {
        last,
        attempts,
        fail_fast: false,
    })
}

/// One candidate ready to be called: its config, live health and provider.
pub(crate) struct Contender<'a> {
    pub candidate: &'a Candidate,
    pub model: &'a ModelConfig,
    pub health: &'a Arc<ModelHealth>,
    pub provider: &'a Provider,
}

impl<'a> Contender<'a> {
    /// `None` when the candidate is not (or no longer) configured.
    fn of(up: Upstreams<'a>, candidate: &'a Candidate) -> Option<Contender<'a>> {
        let model = up.models.get(&candidate.model)?;
        Some(Contender {
            candidate,
            model,
            health: up.health.get(candidate.model.as_str())?,
            provider: up.providers.get(&model.provider)?,
        })
    }

    async fn attempt<M: Mode>(
        &self,
        mode: &M,
        request: &ChatRequest,
        route: &RouteConfig,
        deadline: Option<Instant>,
    ) -> Result<(M::Output, Duration), ProviderError> {
        let call = Call {
            request,
            upstream_model: &self.model.upstream,
            default_max_tokens: self.model.entry.max_output,
            traceparent: crate::telemetry::otel::attempt(self.model),
        };
        mode.attempt(
            self.provider,
            &self.model.entry,
            call,
            self.health,
            route,
            deadline,
        )
        .await
    }

    /// Record a failed attempt in the model's health and the logs; the attempt, with what the
    /// provider may have billed for it.
    fn failed(&self, err: &ProviderError, elapsed: Duration) -> Attempt {
        let model = self.model;
        self.health.record_failure(Instant::now(), err, elapsed);
        tracing::info!(
            model = %model.id,
            provider = %model.provider,
            kind = err.kind.label(),
            status = err.status,
            upstream_message = %err.message,
            "attempt failed"
        );
        let mut failed = Attempt::of(model, err.kind.label(), err.status, elapsed);
        if may_be_billed(err) {
            let usage = Usage::new(self.candidate.prompt_tokens, 0);
            failed.charged = Some((usage, model.entry.usage_cost_pico(&usage)));
        }
        failed
    }
}
