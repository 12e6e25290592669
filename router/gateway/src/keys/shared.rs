//! Keys with `[redis]`: budgets and RPM/TPM windows counted on Redis for every replica, key
//! events published to all of them, and the fallback when Redis is down.

use super::*;
use crate::config::OnFailure;
use crate::shared::{Down, Event, Limits, Reply, Shared};

/// How often a request waiting for reservations in flight (on other replicas too) asks again.
const POLL: Duration = Duration::from_millis(25);

impl KeyState {
    /// The limits counted on Redis; `None` for a key without any (it never touches Redis).
    fn shared_limits(&self) -> Option<Limits> {
        let r = &self.record;
        (r.budget_picousd.is_some() || r.rpm.is_some() || r.tpm.is_some()).then_some(Limits {
            budget_picousd: r.budget_picousd,
            rpm: r.rpm,
            tpm: r.tpm,
        })
    }

    /// Keep the local mirror in step with a shared reservation: this replica's own windows
    /// (admission and the fallback read them) and the shared spend as last seen.
    fn mirror(&self, now_ms: i64, spent: i64, tokens: u64) -> i64 {
        let now_s = now_ms.div_euclid(1000);
        let Ok(mut live) = self.live.lock() else {
            return now_s;
        };
        let start = self.period.start(now_ms);
        if start != live.period_start_ms {
            live.period_start_ms = start;
            live.spent = 0;
        }
        live.spent = live.spent.max(spent);
        live.requests.add(now_s, 1);
        live.tokens.add(now_s, tokens);
        now_s
    }

    fn saw_spent(&self, spent: i64) {
        if let Ok(mut live) = self.live.lock() {
            live.spent = live.spent.max(spent);
        }
    }
}

impl Keys {
    /// Reserve budget and tokens and count one upstream call for `key`: on Redis when it is
    /// configured and the key has limits, else in this process. Waits up to `wait` when only
    /// reservations in flight stand in the way (then 429; 402 only when spent).
    pub async fn reserve(
        &self,
        key: &Arc<KeyState>,
        cost: i64,
        tokens: u64,
        wait: Duration,
    ) -> Result<Reservation, Error> {
        match (&self.shared, key.shared_limits()) {
            (Some(shared), Some(limits)) => {
                reserve_shared(shared, key, limits, cost, tokens, wait).await
            }
            _ => key.reserve_waiting(cost, tokens, wait).await,
        }
    }

    /// A key's spend and windows: every replica's with Redis, else this one's.
    pub async fn usage(&self, key: &KeyState) -> Usage {
        let now = now_ms();
        let mut usage = key.usage(now);
        if let (Some(shared), Some(limits)) = (&self.shared, key.shared_limits()) {
            let start = key.period.start(now);
            let has_budget = limits.budget_picousd.is_some();
            if let Ok(u) = shared.usage(&key.record.id, start, has_budget).await {
                if has_budget {
                    usage.spent_picousd = u.spent;
                    usage.spent_usd = pico_to_usd(u.spent);
                    usage.reserved_usd = pico_to_usd(u.reserved);
                    usage.remaining_usd = key
                        .record
                        .budget_picousd
                        .map(|b| pico_to_usd((b - u.spent).max(0)));
                }
                usage.requests_last_minute = u.requests_last_minute;
                usage.tokens_last_minute = u.tokens_last_minute;
                usage.source = "redis";
            }
        }
        usage
    }

    /// Seed the shared counter of every key with a budget from the ledger (at start; each
    /// counter once over all replicas, whoever is first).
    pub(super) async fn seed_shared(&self) {
        let Some(shared) = &self.shared else { return };
        let now = now_ms();
        for k in self.list() {
            if k.record.budget_picousd.is_some()
                && !k.is_revoked()
                && shared
                    .seed(&k.record.id, k.period.start(now))
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    /// Tell every replica (best effort; the store's re-read is the fallback).
    pub(super) async fn publish(&self, event: Event) {
        if let Some(shared) = &self.shared {
            shared.publish(&event).await;
        }
    }

    /// An event from some replica.
    pub fn on_event(&self, event: &Event) {
        match event {
            Event::Revoke { hash, id } => {
                if let Some(k) = self.held(hash)
                    && !k.revoked.swap(true, Ordering::AcqRel)
                {
                    tracing::info!(key = %id, "key revoked on another replica");
                }
            }
            Event::Create { hash } => self.gate.unknown.invalidate(hash),
            Event::CacheClear => {}
        }
    }

    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }
}

async fn reserve_shared(
    shared: &Arc<Shared>,
    key: &Arc<KeyState>,
    limits: Limits,
    cost: i64,
    tokens: u64,
    wait: Duration,
) -> Result<Reservation, Error> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = now_ms();
        let start = key.period.start(now);
        let reply = shared
            .reserve(&key.record.id, start, limits, cost, tokens)
            .await;
        match reply {
            Ok(Reply::Reserved { hold, spent }) => {
                let at_s = key.mirror(now, spent, tokens);
                return Ok(Reservation {
                    key: key.clone(),
                    cost,
                    tokens,
                    at_s,
                    settled: false,
                    shared: Some((shared.clone(), hold)),
                });
            }
            Ok(Reply::Spent { spent }) => {
                key.saw_spent(spent);
                let budget = limits.budget_picousd.unwrap_or(0);
                return Err(key.spent_error(budget));
            }
            Ok(Reply::Full { spent, .. }) => {
                key.saw_spent(spent);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    let budget = limits.budget_picousd.unwrap_or(0);
                    return Err(Error::rate_limited(
                        key.reserved_message(budget, spent),
                        Duration::from_secs(1),
                    ));
                }
                // Another replica's settle does not wake us: ask again shortly (a settle on
                // this replica wakes us at once).
                let notified = key.settled.notified();
                let _ = tokio::time::timeout(left.min(POLL), notified).await;
            }
            Ok(Reply::Rpm { wait }) => {
                return Err(key.rpm_error(limits.rpm.unwrap_or(0), wait));
            }
            Ok(Reply::Tpm { wait, used }) => {
                return Err(key.tpm_error(limits.tpm.unwrap_or(0), used, tokens, wait));
            }
            Err(Down) => {
                let has_budget = limits.budget_picousd.is_some();
                let has_rates = limits.rpm.is_some() || limits.tpm.is_some();
                return match shared.on_failure(has_budget, has_rates) {
                    OnFailure::Closed => {
                        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                        Err(Error::limits_unavailable(format!(
                            "Key '{}' has limits shared by every replica, and the shared \
                             counters (Redis) cannot be reached; [redis] on_failure = \
                             \"closed\" refuses such requests until they can",
                            key.record.id
                        )))
                    }
                    OnFailure::Local => {
                        let counter = if has_budget {
                            &shared.stats.fallbacks_budgets
                        } else {
                            &shared.stats.fallbacks_rates
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if has_budget {
                            // What this replica spends meanwhile reaches Redis from the ledger.
                            shared.mark_dirty(&key.record.id, start, Duration::from_secs(1));
                        }
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        key.reserve_waiting(cost, tokens, left).await
                    }
                };
            }
        }
    }
}
