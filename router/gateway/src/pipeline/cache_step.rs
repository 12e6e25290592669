//! The cache step of the pipeline: plan the lookup, answer a hit (a stream is replayed from
//! events), lead or wait on a miss, and write the answer when it is complete.

use super::*;

/// An answer from the cache, as a routed answer: no attempts, nothing spent.
pub(super) fn from_cache<T>(
    value: T,
    entry: &cache::Entry,
    p: Planned<'_, '_>,
    ex: Option<&Exchange>,
) -> Routed<T> {
    if let Some(ex) = ex {
        ex.routed(
            &entry.model,
            &entry.provider,
            Vec::new(),
            policy_records(&p.applied.runs),
        );
        ex.first_token(ex.started.elapsed());
    }
    crate::telemetry::otel::answered(ex, &entry.response);
    Routed {
        value,
        model: entry.model.clone(),
        provider: entry.provider.clone(),
        route: p.route.name.clone(),
        attempts: Vec::new(),
        decision: p.decision,
        latency: Duration::ZERO,
        policies: p.applied.runs,
        headers: p.applied.headers,
        cache: Outcome::Hit,
        cost_picousd: 0,
        hedge: None,
        // A cached answer sends no shadow (nothing is asked of any model).
        shadow: None,
    }
}

/// The cache's part in one request: its plan, its key, and (on a miss that will write) the
/// leadership of that key.
pub(super) struct CacheStep {
    pub(super) plan: Option<cache::Plan>,
    pub(super) key: cache::Key,
    pub(super) hit: Option<Arc<cache::Entry>>,
    pub(super) leader: Option<Leader>,
    pub(super) outcome: Outcome,
}

impl CacheStep {
    pub(super) async fn begin(gw: &Gateway, p: &Planned<'_, '_>, target: &Target<'_>) -> CacheStep {
        let started = Instant::now();
        let exchange = crate::exchange::current();
        let ex = exchange.as_deref();
        let plan = cache::plan(
            gw.cache.config(),
            &p.request,
            target.cache.as_ref(),
            target.cache_control.as_deref(),
        );
        let mut step = CacheStep {
            plan,
            key: [0; 32],
            hit: None,
            leader: None,
            outcome: Outcome::Bypass,
        };
        match plan {
            None => gw.cache.bypassed(),
            Some(plan) => {
                step.key = cache::key(
                    ex.map_or("", Exchange::scope),
                    target.name.unwrap_or(DEFAULT_ROUTE),
                    target.models,
                    &p.request,
                );
                // Wait for an identical request in flight at most as long as this one may take.
                let wait = p.route.total;
                let lookup_started = Instant::now();
                match gw.cache.lookup(step.key, plan, wait).await {
                    Lookup::Hit(e) => {
                        step.hit = Some(e);
                        step.outcome = Outcome::Hit;
                    }
                    Lookup::Miss(leader) => {
                        step.leader = leader;
                        step.outcome = Outcome::Miss;
                    }
                }
                if let Some(ex) = ex {
                    // Waiting for the leader is upstream time, not the gateway's own.
                    let waited = lookup_started.elapsed();
                    let own = started.elapsed().saturating_sub(waited);
                    ex.stage(Stage::Cache, own + waited.min(Duration::from_micros(50)));
                }
            }
        }
        if let Some(ex) = ex {
            ex.set_cache(step.outcome);
        }
        crate::telemetry::otel::cache(ex, started, step.outcome, &p.request);
        step
    }

    pub(super) fn ttl(&self) -> Duration {
        self.plan.map_or(Duration::ZERO, |p| p.ttl)
    }

    pub(super) fn writes(&self) -> bool {
        self.plan.is_some_and(|p| p.write)
    }

    /// Store a complete answer (if this request may write), then release the waiters.
    pub(super) fn store(
        &mut self,
        gw: &Gateway,
        ex: Option<&Exchange>,
        entry: impl FnOnce() -> cache::Entry,
    ) {
        if self.writes() {
            let started = Instant::now();
            gw.cache.insert(self.key, entry());
            if let Some(ex) = ex {
                ex.stage(Stage::Cache, started.elapsed());
            }
        }
        self.leader = None;
    }

    /// What a streamed answer needs to fill the cache when it ends cleanly.
    pub(super) fn write_handle(&mut self, gw: &Gateway) -> Option<CacheWrite> {
        let leader = self.leader.take();
        if !self.writes() {
            return None;
        }
        Some(CacheWrite {
            cache: gw.cache.clone(),
            key: self.key,
            ttl: self.ttl(),
            _leader: leader,
        })
    }
}

/// Fills the cache at the end of a clean stream; holding it keeps identical requests waiting.
pub(super) struct CacheWrite {
    pub(super) cache: Arc<cache::ResponseCache>,
    pub(super) key: cache::Key,
    pub(super) ttl: Duration,
    pub(super) _leader: Option<Leader>,
}

/// A cached answer as stream events: the text, the tool calls, the finish, the usage.
pub(super) fn replay_events(r: &ChatResponse) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    let Some(choice) = r.choices.first() else {
        return out;
    };
    let text = choice.message.text();
    if !text.is_empty() {
        out.push(StreamEvent::Content(text.to_owned()));
    }
    for (i, call) in choice.message.tool_calls.iter().flatten().enumerate() {
        out.push(StreamEvent::ToolCall {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            id: Some(call.id.clone()),
            name: Some(call.function.name.clone()),
            arguments: call.function.arguments.clone(),
        });
    }
    out.push(StreamEvent::Finish(choice.finish_reason));
    out.push(StreamEvent::Usage(r.usage));
    out
}
