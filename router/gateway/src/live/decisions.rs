//! Routing decisions on the feed. The pipeline *marks* a request's exchange when it has decided
//! (runner-up and reason, which only the `Decision` knows) — only when someone listens and the
//! request is sampled (`[live] decision_sample`), so an unwatched gateway builds nothing — and
//! the exchange publishes the event when it finishes, when attempts, cache, status, latency and
//! cost are known.

use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_routing::candidates::Decision;
use switchyard_store::RequestRecord;
use switchyard_types::money::pico_to_usd;
use switchyard_types::rng::mix;

use super::DecisionEvent;

/// What the decision adds to the exchange's facts.
#[derive(Debug, Clone, Default)]
pub struct Mark {
    pub runner_up: Option<String>,
    pub reason: String,
}

impl Mark {
    pub fn of(decision: &Decision) -> Mark {
        Mark {
            runner_up: decision.eligible().get(1).map(|c| c.model.to_string()),
            reason: decision.reason(),
        }
    }

    /// The event, from the finished request's row.
    pub fn event(self, row: &RequestRecord) -> DecisionEvent {
        let attempts = u32::try_from(row.attempts.len()).unwrap_or(u32::MAX);
        DecisionEvent {
            ts_ms: row.ts_ms,
            request_id: row
                .client_request_id
                .clone()
                .unwrap_or_else(|| row.id.clone()),
            route: row.route.clone(),
            model: row.model.clone(),
            runner_up: self.runner_up,
            reason: self.reason,
            attempts,
            fallbacks: attempts.saturating_sub(1),
            cache: row.cache.clone(),
            policies: row.policies.iter().map(|p| p.policy.clone()).collect(),
            status: row.status,
            latency_ms: row.latency_ms,
            cost_usd: pico_to_usd(row.cost_picousd),
        }
    }
}

/// Whether this request is one of the share `rate` (0 to 1) sent to the feed. Not for anything
/// secret: a counter through SplitMix64's mixer, seeded by the clock at first use.
pub fn sampled(rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false;
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = switchyard_types::clock::now_ms().cast_unsigned();
    let draw = (mix(n ^ mix(seed / 60_000)) >> 11) as f64 / (1u64 << 53) as f64;
    draw < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_about_its_share() {
        assert!(sampled(1.0) && !sampled(0.0) && !sampled(f64::NAN));
        let kept = (0..20_000).filter(|_| sampled(0.25)).count();
        assert!(
            (4_000..6_000).contains(&kept),
            "kept {kept} of 20000 at 0.25"
        );
    }
}
