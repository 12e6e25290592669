//! How long to wait before a retry, and whether a retry may happen at all.
//!
//! `RetryBudget` caps retries as a share of recent traffic (Envoy `retry_budget`, Linkerd
//! `retry_ratio` + `min_retries_per_second`, tower's `Budget`; reference §9.2) so that retries cannot
//! multiply the load on a struggling upstream. `backoff` is full jitter (Brooker, reference §9.5);
//! `retry_delay` lets a server-given retry-after win. Time is passed in; nothing here reads the clock.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use switchyard_types::error::ProviderError;

/// Longest server-given wait `retry_delay` honours. OpenAI's Python SDK follows `retry-after` only
/// up to 60 s; past that, the executor does better to fall back to another model than to sleep.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The budget's time window is kept as this many slots; a slot expires as a whole.
const SLOTS: usize = 10;

/// Retries allowed in any `ttl`: `min_per_sec · ttl + ratio · requests deposited in the last ttl`.
/// Shared by every request of a route (or of the gateway); one short mutex section per call.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    reserve: f64,
    slot: Duration,
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// Start of the current slot; `None` before the first call.
    head_start: Option<Instant>,
    head: usize,
    slots: [Counts; SLOTS],
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    deposits: u64,
    withdrawals: u64,
}

impl RetryBudget {
    /// `ratio` 0.2 = one retry per five requests; `min_per_sec` lets low-traffic routes retry at
    /// all; `ttl` is how long a deposit counts. A negative or NaN ratio counts as 0.
    pub fn new(ratio: f64, min_per_sec: u32, ttl: Duration) -> RetryBudget {
        let ratio = if ratio.is_finite() {
            ratio.max(0.0)
        } else {
            0.0
        };
        let slot = (ttl / SLOTS as u32).max(Duration::from_millis(1));
        RetryBudget {
            ratio,
            reserve: f64::from(min_per_sec) * (slot * SLOTS as u32).as_secs_f64(),
            slot,
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Record a request (call once per client request, not per attempt).
    pub fn deposit(&self, now: Instant) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let head = ring.advance(now, self.slot);
        head.deposits = head.deposits.saturating_add(1);
    }

    /// Take one retry from the budget; `false` means do not retry (fall back or fail instead).
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.advance(now, self.slot);
        if ring.withdrawals() < self.allowed(ring.deposits()) {
            let head = ring.head;
            ring.slots[head].withdrawals += 1;
            true
        } else {
            false
        }
    }

    /// Retries still available now (for metrics and explanations).
    pub fn remaining(&self, now: Instant) -> u64 {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.advance(now, self.slot);
        self.allowed(ring.deposits())
            .saturating_sub(ring.withdrawals())
    }

    fn allowed(&self, deposits: u64) -> u64 {
        // The epsilon keeps 0.2 × 100 from flooring to 19.
        let allowed = self.reserve + self.ratio * deposits as f64 + 1e-9;
        allowed.floor() as u64
    }
}

impl Ring {
    /// Rotate so that the head slot contains `now`, clearing slots that expired; returns the head.
    fn advance(&mut self, now: Instant, slot: Duration) -> &mut Counts {
        let start = *self.head_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        let steps = elapsed.as_nanos() / slot.as_nanos().max(1);
        if steps >= SLOTS as u128 {
            self.slots = [Counts::default(); SLOTS];
            self.head_start = Some(now);
        } else {
            for _ in 0..steps {
                self.head = (self.head + 1) % SLOTS;
                self.slots[self.head] = Counts::default();
            }
            // steps < SLOTS, and start + steps · slot <= now: no overflow.
            self.head_start = Some(start + slot * steps as u32);
        }
        &mut self.slots[self.head]
    }

    fn deposits(&self) -> u64 {
        self.slots.iter().map(|c| c.deposits).sum()
    }

    fn withdrawals(&self) -> u64 {
        self.slots.iter().map(|c| c.withdrawals).sum()
    }
}

/// Full jitter: a uniformly random wait in `[0, min(cap, base · 2^attempt))`. `rng` returns a
/// number in `[0, 1)` (values outside are clamped), so tests can pass a fixed sequence.
pub fn backoff(
    attempt: u32,
    base: Duration,
    cap: Duration,
    rng: &mut impl FnMut() -> f64,
) -> Duration {
    let ceiling = 2u32
        .checked_pow(attempt)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(cap, |d| d.min(cap));
    let r = rng();
    let r = if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::try_from_secs_f64(ceiling.as_secs_f64() * r).unwrap_or_default()
}

/// The wait before retrying after `error`: the server's retry-after when it gave one (up to
/// `MAX_RETRY_AFTER`), else `backoff`.
pub fn retry_delay(
    error: &ProviderError,
    attempt: u32,
    base: Duration,
    cap: Duration,
    rng: &mut impl FnMut() -> f64,
) -> Duration {
    match error.retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER),
        None => backoff(attempt, base, cap, rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_types::error::ErrorKind;

    const TTL: Duration = Duration::from_secs(10);

    fn withdraw_all(b: &RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_withdraw(now) {
            n += 1;
            assert!(n < 10_000, "budget never runs out");
        }
        n
    }

    #[test]
    fn min_per_sec_is_a_floor_without_traffic() {
        let now = Instant::now();
        let b = RetryBudget::new(0.2, 3, TTL);
        assert_eq!(b.remaining(now), 30);
        assert_eq!(withdraw_all(&b, now), 30);
        assert_eq!(b.remaining(now), 0);
    }

    #[test]
    fn ratio_of_recent_requests_adds_to_the_floor() {
        let now = Instant::now();
        let b = RetryBudget::new(0.2, 3, TTL);
        for _ in 0..100 {
            b.deposit(now);
        }
        assert_eq!(withdraw_all(&b, now), 50);
        let b = RetryBudget::new(0.5, 0, TTL);
        for _ in 0..9 {
            b.deposit(now);
        }
        assert_eq!(withdraw_all(&b, now), 4);
    }

    #[test]
    fn deposits_and_withdrawals_expire_after_ttl() {
        let start = Instant::now();
        let b = RetryBudget::new(1.0, 0, TTL);
        for _ in 0..10 {
            b.deposit(start);
        }
        assert_eq!(withdraw_all(&b, start), 10);
        // Half a ttl later, nothing has expired yet.
        assert_eq!(b.remaining(start + TTL / 2), 0);
        for _ in 0..4 {
            b.deposit(start + TTL / 2);
        }
        assert_eq!(b.remaining(start + TTL / 2), 4);
        // After ttl the first deposits and withdrawals are gone; the later deposits remain.
        assert_eq!(b.remaining(start + TTL + Duration::from_millis(1)), 4);
        // Long idle: everything expired.
        assert_eq!(b.remaining(start + TTL * 5), 0);
        let floor = RetryBudget::new(0.2, 3, TTL);
        assert_eq!(withdraw_all(&floor, start), 30);
        assert_eq!(floor.remaining(start + TTL), 30);
    }

    #[test]
    fn backoff_is_full_jitter_below_the_exponential_ceiling() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let mut top = || 0.999_999;
        let mut zero = || 0.0;
        for attempt in 0..40 {
            let ceiling = if attempt < 6 {
                base * 2u32.pow(attempt)
            } else {
                cap
            };
            let high = backoff(attempt, base, cap, &mut top);
            assert!(
                high < ceiling && high > ceiling.mul_f64(0.99),
                "{attempt}: {high:?}"
            );
            assert_eq!(backoff(attempt, base, cap, &mut zero), Duration::ZERO);
        }
        let mut half = || 0.5;
        assert_eq!(backoff(2, base, cap, &mut half), Duration::from_millis(200));
        let mut wild = || f64::NAN;
        assert_eq!(backoff(3, base, cap, &mut wild), Duration::ZERO);
        let mut over = || 7.0;
        assert_eq!(backoff(1, base, cap, &mut over), Duration::from_millis(200));
    }

    #[test]
    fn retry_after_wins_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let mut rng = || 0.5;
        let told = ProviderError::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(Some(Duration::from_secs(7)));
        assert_eq!(
            retry_delay(&told, 0, base, cap, &mut rng),
            Duration::from_secs(7)
        );
        let huge = told
            .clone()
            .with_retry_after(Some(Duration::from_secs(3600)));
        assert_eq!(retry_delay(&huge, 0, base, cap, &mut rng), MAX_RETRY_AFTER);
        let untold = ProviderError::new(ErrorKind::Server, "boom");
        assert_eq!(
            retry_delay(&untold, 1, base, cap, &mut rng),
            Duration::from_millis(100)
        );
    }
}
