//! One key's live state: its record, the spend and reservations of its budget period, and its
//! RPM/TPM windows. Admission, reservation and settlement happen here, under one short lock.

use super::*;
use crate::shared::{Hold, Shared};
use rate::RateWindow;

/// One key's live state.
#[derive(Debug)]
pub struct KeyState {
    pub record: KeyRecord,
    pub period: Period,
    pub(super) revoked: AtomicBool,
    pub(super) live: Mutex<Live>,
    /// Woken whenever a reservation is settled: requests waiting for room in the budget.
    pub(super) settled: tokio::sync::Notify,
}

#[derive(Debug)]
pub(super) struct Live {
    pub(super) period_start_ms: i64,
    pub(super) spent: i64,
    pub(super) reserved: i64,
    pub(super) requests: RateWindow,
    pub(super) tokens: RateWindow,
}

/// A budget and token reservation, released (and replaced by the actual figures) by `settle`.
#[derive(Debug)]
pub struct Reservation {
    pub(super) key: Arc<KeyState>,
    pub(super) cost: i64,
    pub(super) tokens: u64,
    pub(super) at_s: i64,
    pub(super) settled: bool,
    /// Held on Redis (shared by every replica) rather than in this process.
    pub(super) shared: Option<(Arc<Shared>, Hold)>,
}

impl Reservation {
    /// Replace the reservation by what the request cost and used.
    pub fn settle(mut self, cost: i64, tokens: u64) {
        self.release(cost, tokens);
    }

    pub(super) fn release(&mut self, cost: i64, tokens: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Ok(mut live) = self.key.live.lock() {
            if self.shared.is_none() {
                live.reserved -= self.cost;
            }
            // With Redis this is the local mirror (what this replica falls back to).
            live.spent += cost;
            live.tokens.adjust(self.at_s, self.tokens, tokens);
        }
        if let Some((shared, hold)) = self.shared.take() {
            shared.settle(hold, cost, self.tokens, tokens);
        }
        self.key.settled.notify_waiters();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Never settled (the request failed before any usage): nothing was spent. A request
        // cancelled while its upstream call ran is settled with an estimate by the pipeline.
        self.release(0, 0);
    }
}

/// Why a reservation was refused.
#[derive(Debug)]
pub enum Refusal {
    /// Only reservations of requests in flight stand in the way: worth waiting for them.
    Reserved(String),
    /// Spent, or over a rate limit: final.
    Final(Error),
}

/// Spend and limits of a key, for `GET /admin/keys/{id}/spend`.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub period: &'static str,
    pub period_start_ms: i64,
    pub spent_usd: f64,
    pub spent_picousd: i64,
    pub reserved_usd: f64,
    pub budget_usd: Option<f64>,
    pub remaining_usd: Option<f64>,
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
    /// `redis` (every replica's figures) or `local` (this replica's own).
    pub source: &'static str,
}

impl KeyState {
    pub(super) fn new(record: KeyRecord, spent: i64, period_start_ms: i64) -> KeyState {
        let period = Period::parse(&record.budget_period).unwrap_or(Period::Month);
        let revoked = record.revoked_ms.is_some();
        KeyState {
            record,
            period,
            revoked: AtomicBool::new(revoked),
            live: Mutex::new(Live {
                period_start_ms,
                spent,
                reserved: 0,
                requests: RateWindow::default(),
                tokens: RateWindow::default(),
            }),
            settled: tokio::sync::Notify::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Refuse a request at admission when the key's RPM window is already full. Nothing is
    /// counted here: every upstream-calling unit of work counts itself in `reserve` (a batch of
    /// 100 items counts 100), and a cache hit calls no upstream.
    pub fn admit(&self, now_s: i64) -> Result<(), Error> {
        let Ok(live) = self.live.lock() else {
            return Ok(());
        };
        self.rpm_room(&live, now_s, 1)
    }

    fn rpm_room(&self, live: &Live, now_s: i64, n: u64) -> Result<(), Error> {
        let Some(rpm) = self.record.rpm else {
            return Ok(());
        };
        let used = live.requests.sum(now_s);
        if used + n <= u64::from(rpm) {
            return Ok(());
        }
        let wait = live.requests.wait_for(now_s, used + n - u64::from(rpm));
        Err(self.rpm_error(rpm, wait))
    }

    pub(super) fn rpm_error(&self, rpm: u32, wait: Duration) -> Error {
        Error::rate_limited(
            format!(
                "Key '{}' is over its limit of {rpm} requests per minute (upstream calls)",
                self.record.id
            ),
            wait,
        )
    }

    pub(super) fn tpm_error(&self, tpm: u32, used: u64, tokens: u64, wait: Duration) -> Error {
        Error::rate_limited(
            format!(
                "Key '{}' is over its limit of {tpm} tokens per minute ({used} used, this \
                 request needs up to {tokens})",
                self.record.id
            ),
            wait,
        )
    }

    fn period_words(&self) -> String {
        if self.period == Period::Total {
            "key".to_owned()
        } else {
            self.period.as_str().to_owned()
        }
    }

    pub(super) fn spent_error(&self, budget: i64) -> Error {
        Error::budget_exceeded(format!(
            "Key '{}' has spent its budget of ${:.6} for this {}",
            self.record.id,
            pico_to_usd(budget),
            self.period_words(),
        ))
    }

    pub(super) fn reserved_message(&self, budget: i64, spent: i64) -> String {
        format!(
            "Key '{}' has ${:.6} of its ${:.6} budget left for this {}, all of it reserved \
             by its requests in flight: retry when they have finished",
            self.record.id,
            pico_to_usd(budget - spent),
            pico_to_usd(budget),
            self.period_words(),
        )
    }

    /// Count one upstream call against RPM, reserve `cost` (picodollars) and `tokens`, or
    /// refuse: 402 only when the budget is *spent*; when reservations of requests in flight
    /// fill it, `Refusal::Reserved` (the caller waits for them to settle).
    pub fn reserve(
        self: &Arc<Self>,
        now_ms: i64,
        cost: i64,
        tokens: u64,
    ) -> Result<Reservation, Refusal> {
        let now_s = now_ms.div_euclid(1000);
        let Ok(mut live) = self.live.lock() else {
            return Err(Refusal::Final(Error::internal("key state poisoned")));
        };
        let start = self.period.start(now_ms);
        if start != live.period_start_ms {
            // A new period: what was spent belongs to the old one.
            live.period_start_ms = start;
            live.spent = 0;
        }
        if let Some(budget) = self.record.budget_picousd
            && live.spent + live.reserved >= budget
        {
            if live.spent >= budget {
                return Err(Refusal::Final(self.spent_error(budget)));
            }
            return Err(Refusal::Reserved(self.reserved_message(budget, live.spent)));
        }
        self.rpm_room(&live, now_s, 1).map_err(Refusal::Final)?;
        if let Some(tpm) = self.record.tpm {
            let used = live.tokens.sum(now_s);
            if used + tokens > u64::from(tpm) {
                let need = (used + tokens).saturating_sub(u64::from(tpm));
                let wait = if tokens > u64::from(tpm) {
                    Duration::from_secs(60)
                } else {
                    live.tokens.wait_for(now_s, need)
                };
                return Err(Refusal::Final(self.tpm_error(tpm, used, tokens, wait)));
            }
        }
        live.requests.add(now_s, 1);
        live.reserved += cost;
        live.tokens.add(now_s, tokens);
        Ok(Reservation {
            key: self.clone(),
            cost,
            tokens,
            at_s: now_s,
            settled: false,
            shared: None,
        })
    }

    /// `reserve`, waiting up to `wait` for reservations in flight to settle when only they
    /// stand in the way; still blocked then: 429 with `retry-after` (never 402: nothing is
    /// spent yet).
    pub async fn reserve_waiting(
        self: &Arc<Self>,
        cost: i64,
        tokens: u64,
        wait: Duration,
    ) -> Result<Reservation, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Registered before checking, so a settlement in between is not missed.
            notified.as_mut().enable();
            match self.reserve(switchyard_types::clock::now_ms(), cost, tokens) {
                Ok(r) => return Ok(r),
                Err(Refusal::Final(e)) => return Err(e),
                Err(Refusal::Reserved(message)) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(Error::rate_limited(message, Duration::from_secs(1)));
                    }
                }
            }
        }
    }

    pub fn usage(&self, now_ms: i64) -> Usage {
        let now_s = now_ms.div_euclid(1000);
        let (start, spent, reserved, req, tok) = match self.live.lock() {
            Ok(mut l) => {
                let start = self.period.start(now_ms);
                if start != l.period_start_ms {
                    l.period_start_ms = start;
                    l.spent = 0;
                }
                (
                    l.period_start_ms,
                    l.spent,
                    l.reserved,
                    l.requests.sum(now_s),
                    l.tokens.sum(now_s),
                )
            }
            Err(_) => (0, 0, 0, 0, 0),
        };
        let budget = self.record.budget_picousd;
        Usage {
            period: self.period.as_str(),
            period_start_ms: start,
            spent_usd: pico_to_usd(spent),
            spent_picousd: spent,
            reserved_usd: pico_to_usd(reserved),
            budget_usd: budget.map(pico_to_usd),
            remaining_usd: budget.map(|b| pico_to_usd((b - spent).max(0))),
            requests_last_minute: req,
            tokens_last_minute: tok,
            source: "local",
        }
    }

    /// Whether the key may use `route` / `model` (empty lists allow all).
    pub fn allows_route(&self, route: &str) -> bool {
        self.record.routes.is_empty() || self.record.routes.iter().any(|r| r == route)
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.record.models.is_empty() || self.record.models.iter().any(|m| m == model)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.record.scopes.iter().any(|s| s == scope)
    }

    /// A key without scopes calls models; one with scopes only if `models` is among them (a
    /// `dashboard`-only key is read-only).
    pub fn may_call_models(&self) -> bool {
        self.record.scopes.is_empty() || self.has_scope(super::SCOPE_MODELS)
    }

    /// The refusal of a model call (or a write) by a key that may not make it.
    pub fn read_only_error(&self) -> Error {
        Error::forbidden(
            None,
            format!(
                "Key '{}' is read-only (scopes: {}): it cannot call models or change state",
                self.record.id,
                self.record.scopes.join(", ")
            ),
        )
    }
}
