//! Hedged requests (a route's `hedge`): when the request's first attempt has produced nothing
//! after the route's wait — no first token for a stream, no answer for a complete request — one
//! more attempt starts on the next candidate, preferring another provider. The first to produce
//! wins; the other's future is dropped, which closes its upstream connection.
//!
//! A hedge budget (`RetryBudget` with no floor) caps hedges at `max_share` of the route's requests
//! of the last 10 s, so a slow provider cannot double the load. The cancelled attempt is billed as
//! an estimate (its prompt; for a complete answer also its expected output, which the provider
//! may go on producing), flagged as estimated like every other failed attempt the provider may
//! have billed.

use super::*;
use switchyard_routing::route::{Hedge, HedgeAfter, MIN_HEDGE_SAMPLES};

/// What the explanation says about the hedge of one request.
#[derive(Debug, Clone, Serialize)]
pub struct HedgeReport {
    /// The model whose first attempt was slow.
    pub primary: ModelId,
    /// How long it had before the hedge was considered, ms.
    pub after_ms: f64,
    /// Where that wait came from (the fixed setting, or the live percentile and its evidence).
    pub wait: String,
    /// `hedge_won`, `primary_won`, `both_failed`, or why no hedge started: `no_budget` (the
    /// route's `max_share` of recent requests already hedged), `no_candidate` (no other
    /// candidate may serve now).
    pub outcome: &'static str,
    /// The second attempt's model, when one started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge: Option<ModelId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<ModelId>,
    /// The cancelled attempt's estimated cost, USD.
    pub extra_cost_usd: f64,
}

/// The winner of a race.
pub(super) struct Won<T> {
    pub value: T,
    pub model: ModelId,
    pub provider: ProviderId,
}

/// Both attempts of a race failed: the last error, and whether it rules out any fallback.
pub(super) struct BothFailed {
    pub last: (ModelId, ProviderError),
    pub fail_fast: bool,
}

pub(super) enum Raced<T> {
    /// No hedge started: the first attempt's own result, and why not when its wait passed.
    Single(Result<(T, Duration), ProviderError>, Option<HedgeReport>),
    Won(Won<T>, HedgeReport),
    Failed(HedgeReport, BothFailed),
}

/// One request's first attempt on a hedged route, and what it may race with.
pub(super) struct Race<'a, M> {
    pub up: Upstreams<'a>,
    pub mode: &'a M,
    pub route: &'a RouteConfig,
    pub request: &'a ChatRequest,
    pub deadline: Option<Instant>,
    pub hedge: Hedge,
    pub budget: &'a RetryBudget,
}

impl<'a, M: Mode> Race<'a, M> {
    /// Run `first`; after the wait, race it against the best other candidate of `queue` (which
    /// then leaves the queue). Attempts that end are pushed to `attempts`.
    pub(super) async fn run(
        &self,
        first: &Contender<'a>,
        queue: &mut Vec<&'a Candidate>,
        attempts: &mut Vec<Attempt>,
    ) -> Raced<M::Output> {
        let began = Instant::now();
        let mut primary =
            std::pin::pin!(first.attempt(self.mode, self.request, self.route, self.deadline));
        let (wait, why) = self.wait(first, began);
        tokio::select! {
            r = &mut primary => return Raced::Single(r, None),
            () = tokio::time::sleep(wait) => {}
        }
        let mut report = HedgeReport {
            primary: first.model.id.clone(),
            after_ms: ms(wait),
            wait: why,
            outcome: "no_candidate",
            hedge: None,
            winner: None,
            extra_cost_usd: 0.0,
        };
        let now = Instant::now();
        let Some(index) = self.pick(first, queue, now) else {
            return Raced::Single(primary.await, Some(report));
        };
        // Admission first, so that a hedge its model refuses keeps the budget's token.
        let (second, admission) = match Contender::of(self.up, queue[index]) {
            Some(c) => match c.health.admit(now) {
                Admission::Rejected(_) => return Raced::Single(primary.await, Some(report)),
                a => (c, a),
            },
            None => return Raced::Single(primary.await, Some(report)),
        };
        if !self.budget.try_withdraw(now) {
            if matches!(admission, Admission::Probe) {
                // The half-open probe this hedge was given goes back unused.
                second.health.record_abandoned(now);
            }
            report.outcome = "no_budget";
            return Raced::Single(primary.await, Some(report));
        }
        queue.remove(index);
        report.hedge = Some(second.model.id.clone());
        tracing::debug!(primary = %first.model.id, hedge = %second.model.id, "hedge started");
        let hedge_began = Instant::now();
        let mut secondary =
            std::pin::pin!(second.attempt(self.mode, self.request, self.route, self.deadline));
        let mut live = (true, true);
        let mut fail_fast = false;
        loop {
            // Whichever ends first: a success wins (dropping the other, which closes its
            // connection); a failure is recorded and the other goes on alone.
            let (result, me, other, since, other_since) = tokio::select! {
                r = &mut primary, if live.0 => {
                    live.0 = false;
                    (r, first, &second, began, hedge_began)
                }
                r = &mut secondary, if live.1 => {
                    live.1 = false;
                    (r, &second, first, hedge_began, began)
                }
            };
            match result {
                Ok((value, latency)) => {
                    let primary_won = std::ptr::eq(me, first);
                    let won = Attempt::of(me.model, "ok", None, latency);
                    // In the order they started: the primary's record first.
                    let lost = (live.0 || live.1)
                        .then(|| self.cancelled(other, other_since, &me.model.id));
                    if let Some(lost) = &lost {
                        report.extra_cost_usd = lost
                            .charged
                            .map_or(0.0, |(_, pico)| switchyard_types::money::pico_to_usd(pico));
                    }
                    match lost {
                        Some(lost) if !primary_won => attempts.extend([lost, won]),
                        lost => attempts.extend(std::iter::once(won).chain(lost)),
                    }
                    report.outcome = if primary_won {
                        "primary_won"
                    } else {
                        "hedge_won"
                    };
                    report.winner = Some(me.model.id.clone());
                    let won = Won {
                        value,
                        model: me.model.id.clone(),
                        provider: me.model.provider.clone(),
                    };
                    return Raced::Won(won, report);
                }
                Err(err) => {
                    attempts.push(me.failed(&err, since.elapsed()));
                    fail_fast |= !err.kind.allows_fallback();
                    if !live.0 && !live.1 {
                        report.outcome = "both_failed";
                        let last = (me.model.id.clone(), err);
                        return Raced::Failed(report, BothFailed { last, fail_fast });
                    }
                }
            }
        }
    }

    /// How long the first attempt may take before a hedge, and why.
    fn wait(&self, first: &Contender<'_>, now: Instant) -> (Duration, String) {
        match self.hedge.after {
            HedgeAfter::Fixed(d) => (d, format!("after_ms = {}", d.as_millis())),
            HedgeAfter::Quantile { q, fallback, floor } => {
                let what = if M::STREAM { "first token" } else { "answer" };
                let pct = (q * 100.0).round();
                let model = &first.model.id;
                match first.health.latency_quantile(now, q, M::STREAM) {
                    (n, Some(v)) if n >= MIN_HEDGE_SAMPLES => {
                        let d = Duration::from_secs_f64(v.max(0.0) / 1000.0).max(floor);
                        let why =
                            format!("p{pct} time to {what} of {model} over {n} recent successes");
                        (d, why)
                    }
                    (n, _) => (
                        fallback,
                        format!(
                            "fallback_ms: {model} has {n} recent successes, p{pct} needs \
                             {MIN_HEDGE_SAMPLES}"
                        ),
                    ),
                }
            }
        }
    }

    /// The queue's best candidate that may serve now, preferring another provider than the
    /// first's (a slow provider is often slow for all its models).
    fn pick(&self, first: &Contender<'_>, queue: &[&'a Candidate], now: Instant) -> Option<usize> {
        let other = |c: &&Candidate| c.provider != first.model.provider;
        let order = queue
            .iter()
            .enumerate()
            .filter(|(_, c)| other(c))
            .chain(queue.iter().enumerate().filter(|(_, c)| !other(c)));
        for (index, candidate) in order {
            if let Some(c) = Contender::of(self.up, candidate)
                && c.health.snapshot(now).available.is_none()
            {
                return Some(index);
            }
        }
        None
    }

    /// The attempt that lost the race, cancelled: neutral for its model's health (the half-open
    /// probe, if it held one, is released), billed as an estimate.
    fn cancelled(&self, loser: &Contender<'_>, since: Instant, winner: &ModelId) -> Attempt {
        loser.health.record_abandoned(Instant::now());
        let output = if M::STREAM {
            // It had not produced its first token, or it would have won.
            0
        } else {
            loser.candidate.expected_output_tokens.max(0.0).round() as u32
        };
        let usage = Usage::new(loser.candidate.prompt_tokens, output);
        let mut lost = Attempt::of(loser.model, "hedge_cancelled", None, since.elapsed());
        lost.detail = Some(format!(
            "cancelled: {winner} answered first; billed as an estimate ({} prompt + {output} \
             output tokens)",
            usage.prompt_tokens
        ));
        lost.charged = Some((usage, loser.model.entry.usage_cost_pico(&usage)));
        lost
    }
}
