//! The stream tap: watches a streamed answer as the stream's pump reads it and, when it ends
//! (finished, cut upstream, dropped by the client, stalled client, shutdown), settles the
//! key's reservation, fills the cache and the exchange.
//! IMPORTANT: it settles in `Drop` too, so an answer whose pump never reported an end (the
//! runtime shutting down) is still billed for what it used.

use super::*;
use crate::execute::{Ended, Observer, PumpLimits};

/// Watches a streamed answer to its end: then settles the key's reservation with the cost of
/// the final usage (estimated from the text, and flagged, when the upstream sent none — also
/// for a stream cut or abandoned midway, since the provider bills what it generated), fills
/// the exchange, and stores a clean answer in the cache.
pub(super) struct Tap {
    pub(super) exchange: Option<Arc<Exchange>>,
    pub(super) reservation: Option<Reservation>,
    pub(super) entry: Option<CatalogEntry>,
    pub(super) model: ModelId,
    pub(super) provider: ProviderId,
    pub(super) prompt_tokens: u32,
    pub(super) acc: StreamAccumulator,
    pub(super) store: Option<CacheWrite>,
    pub(super) finished: bool,
    pub(super) cut: Option<&'static str>,
    /// What failed attempts before this stream may have been billed (already on the exchange),
    /// settled with the stream's own cost.
    pub(super) billed: i64,
    /// What follows the stream's end: the split arm's counters and the shadow (`after.rs`).
    pub(super) after: Option<super::after::After>,
}

impl Tap {
    /// Hand the primed stream to a pump that reads the upstream whatever the client does; the
    /// tap sees every event as the pump reads it, and the end.
    pub(super) fn wrap(mut self, primed: Primed, limits: PumpLimits) -> Primed {
        for e in &primed.head {
            self.acc.push(e.clone());
        }
        execute::pump(primed, self, limits)
    }

    fn settle(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let clean = self.cut.is_none() && self.acc.finish.is_some();
        let (usage, estimated) = match &self.acc.usage {
            Some(u) => (*u, false),
            None => {
                let family = self
                    .entry
                    .as_ref()
                    .map_or(switchyard_routing::catalog::TokenizerFamily::O200k, |e| {
                        e.tokenizer
                    });
                let mut text = self.acc.text.clone();
                for c in &self.acc.tool_calls {
                    text.push_str(&c.function.name);
                    text.push_str(&c.function.arguments);
                }
                let out = switchyard_routing::tokens::count_text(family, &text).tokens;
                (Usage::new(self.prompt_tokens, out), true)
            }
        };
        let cost = self.entry.as_ref().map_or(0, |e| e.usage_cost_pico(&usage));
        if let Some(r) = self.reservation.take() {
            r.settle(cost + self.billed, u64::from(usage.total_tokens));
        }
        if let Some(ex) = &self.exchange {
            crate::telemetry::otel::streamed(Some(ex), &self.acc);
            ex.answered(&usage, cost, estimated);
            if !clean {
                ex.set_error(Some(self.cut.unwrap_or("client_closed")));
            }
        }
        if let Some(a) = self.after.take() {
            a.ended(cost + self.billed);
        }
        if let Some(w) = self.store.take()
            && clean
        {
            let acc = std::mem::take(&mut self.acc);
            let mut response = acc.into_response(new_id("chatcmpl-"), self.model.to_string());
            response.usage = usage;
            w.cache.insert(
                w.key,
                cache::Entry::new(response, self.model.clone(), self.provider.clone(), w.ttl),
            );
        }
    }
}

impl Observer for Tap {
    fn event(&mut self, event: &StreamEvent) {
        self.acc.push(event.clone());
    }

    fn end(&mut self, how: Ended<'_>) {
        self.cut = how.code();
        self.settle();
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropped before its pump reported an end (the runtime is going away).
        if !self.finished {
            self.cut.get_or_insert("client_closed");
            self.settle();
        }
    }
}
