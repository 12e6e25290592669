//! The key's money around an upstream call: the estimate, the reservation (waiting for room
//! when only requests in flight fill the budget), and the charge of a call cancelled midway.

use super::*;

/// Reserve the key's budget and tokens for this request, or refuse it (402 / 429). Waits up to
/// `[auth] budget_wait_ms` when only reservations of requests in flight are in the way.
pub(super) async fn reserve(gw: &Gateway, e: &Estimate) -> Result<Option<Reservation>, Error> {
    let exchange = crate::exchange::current();
    let Some(key) = exchange.as_ref().and_then(|e| e.key.as_ref()) else {
        return Ok(None);
    };
    let wait = Duration::from_millis(gw.config.auth.budget_wait_ms);
    gw.keys.reserve(key, e.cost, e.tokens, wait).await.map(Some)
}

/// The most a request may cost and use.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Estimate {
    /// Picodollars: the dearest eligible candidate with its prompt and output cap.
    pub(super) cost: i64,
    /// Tokens (prompt + output cap), the most over the candidates.
    pub(super) tokens: u64,
    /// The dearest candidate's usage.
    pub(super) usage: Usage,
    /// The dearest prompt alone (what a call cancelled before any output has cost).
    pub(super) prompt_cost: i64,
    pub(super) prompt_usage: Usage,
}

/// The most this request may cost and use: over every eligible candidate (a fallback may land
/// on any), its prompt plus `max_tokens` (or the model's expected output when unset).
pub(super) fn estimate(gw: &Gateway, decision: &Decision, request: &ChatRequest) -> Estimate {
    estimate_with(decision, request, |m| model_entry(gw, m))
}

/// `estimate`, with the prices from `entry` (a shadow call has no `Gateway`, only the config).
pub(super) fn estimate_with<'e>(
    decision: &Decision,
    request: &ChatRequest,
    entry: impl Fn(&ModelId) -> Option<&'e CatalogEntry>,
) -> Estimate {
    let mut e = Estimate::default();
    for c in decision.eligible() {
        let out = if request.embed.is_some() {
            0
        } else {
            request
                .max_tokens
                .unwrap_or(c.expected_output_tokens.ceil() as u32)
        };
        let usage = Usage::new(c.prompt_tokens, out);
        let prompt = Usage::new(c.prompt_tokens, 0);
        if let Some(entry) = entry(&c.model) {
            let cost = entry.usage_cost_pico(&usage);
            if cost >= e.cost {
                e.cost = cost;
                e.usage = usage;
            }
            let prompt_cost = entry.usage_cost_pico(&prompt);
            if prompt_cost >= e.prompt_cost {
                e.prompt_cost = prompt_cost;
                e.prompt_usage = prompt;
            }
        }
        e.tokens = e.tokens.max(u64::from(usage.total_tokens));
    }
    e
}

/// An upstream call in flight for a key. If the request is cancelled (the client left, so
/// the handler's future is dropped) before the call returns, the provider may still bill it:
/// the reservation is settled with an estimate, and the exchange records it (flagged as
/// estimated) with the code `cancelled`. A complete answer is charged the full estimate
/// (providers finish non-streamed generations); a stream being primed, its prompt (no output
/// had arrived, and dropping the connection stops the generation).
pub(super) struct InFlight {
    reservation: Option<Reservation>,
    exchange: Option<Arc<Exchange>>,
    cost: i64,
    usage: Usage,
}

impl InFlight {
    pub(super) fn new(
        reservation: Option<Reservation>,
        exchange: Option<Arc<Exchange>>,
        cost: i64,
        usage: Usage,
    ) -> InFlight {
        InFlight {
            reservation,
            exchange,
            cost,
            usage,
        }
    }

    /// The call returned: hand back the reservation, nothing to charge here.
    pub(super) fn done(mut self) -> Option<Reservation> {
        self.exchange = None;
        self.reservation.take()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(ex) = self.exchange.take() else {
            return;
        };
        if let Some(r) = self.reservation.take() {
            r.settle(self.cost, u64::from(self.usage.total_tokens));
        }
        ex.answered(&self.usage, self.cost, true);
        ex.cancelled();
    }
}
