//! Per-policy-version counters, a latency histogram and the breaker that stops running a policy
//! that keeps failing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::PolicyError;

/// Consecutive failures that open the breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// First cool-down; doubles each time the probe fails, up to [`BREAKER_MAX_COOLDOWN`].
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);
pub const BREAKER_MAX_COOLDOWN: Duration = Duration::from_secs(300);

const SUB: u64 = 8; // sub-buckets per power of two: ≤ 12.5 % error
const BUCKETS: usize = 8 + 21 * SUB as usize; // up to ~2^24 µs

#[derive(Debug)]
pub struct PolicyStats {
    evaluations: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    busy: AtomicU64,
    input_refused: AtomicU64,
    micros: [AtomicU64; BUCKETS],
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive: u32,
    trips: u32,
    open_until: Option<Instant>,
    probing: bool,
    last_error: Option<String>,
}

/// A snapshot for `/ai/policies`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub evaluations: u64,
    pub errors: u64,
    /// Requests for which the breaker skipped the policy.
    pub skipped: u64,
    /// Requests for which no instance slot was free (load, not the policy's fault).
    pub busy: u64,
    /// Requests refused (413) because they were over this policy's input limits.
    pub input_refused: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub breaker: &'static str,
    /// The last evaluation error.
    pub last_eval_error: Option<String>,
}

impl Default for PolicyStats {
    fn default() -> Self {
        PolicyStats {
            evaluations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            input_refused: AtomicU64::new(0),
            micros: std::array::from_fn(|_| AtomicU64::new(0)),
            state: Mutex::new(BreakerState::default()),
        }
    }
}

fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - u64::from(us.leading_zeros()); // ≥ 3
    let sub = (us >> (exp - 3)) & (SUB - 1);
    ((SUB + (exp - 3) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest value that falls into bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = (i - SUB) / SUB + 3;
    let sub = (i - SUB) % SUB;
    ((SUB + sub + 1) << (exp - 3)) - 1
}

impl PolicyStats {
    /// Whether to run the policy now (closed breaker, or the one probe after a cool-down).
    pub fn admit(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return true;
        };
        match s.open_until {
            None => true,
            Some(t) if Instant::now() >= t && !s.probing => {
                s.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn record_ok(&self, elapsed: Duration) {
        self.observe(elapsed);
        if let Ok(mut s) = self.state.lock() {
            s.consecutive = 0;
            s.open_until = None;
            s.probing = false;
            s.trips = 0;
        }
    }

    pub fn record_err(&self, elapsed: Duration, err: &PolicyError) {
        self.observe(elapsed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            s.consecutive += 1;
            s.last_error = Some(err.to_string());
            if s.probing || s.consecutive >= BREAKER_FAILURES {
                let cooldown = BREAKER_COOLDOWN
                    .saturating_mul(1 << s.trips.min(8))
                    .min(BREAKER_MAX_COOLDOWN);
                s.trips += 1;
                s.open_until = Some(Instant::now() + cooldown);
                s.probing = false;
                tracing::warn!(error = %err, cooldown_s = cooldown.as_secs(), "policy breaker opened");
            }
        }
    }

    pub fn record_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt that ended before the policy ran, for a reason that is not the policy's fault
    /// ([`PolicyError::is_guest_fault`] is false): counted on its own, never against the
    /// breaker. A probe it took is handed back, so the next caller probes instead.
    pub fn record_refused(&self, err: &PolicyError) {
        match err {
            PolicyError::PoolExhausted(_) => self.busy.fetch_add(1, Ordering::Relaxed),
            PolicyError::InputTooLarge(_) => self.input_refused.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        if let Ok(mut s) = self.state.lock() {
            s.probing = false;
        }
    }

    /// A request refused before any policy ran because it is over this policy's input limits.
    pub fn record_input_refused(&self) {
        self.input_refused.fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, elapsed: Duration) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    fn quantile(&self, counts: &[u64], total: u64, q: f64) -> Option<u64> {
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper(i));
            }
        }
        None
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let counts: Vec<u64> = self
            .micros
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total = counts.iter().sum();
        let (breaker, last_error) = match self.state.lock() {
            Ok(s) => (
                match s.open_until {
                    None => "closed",
                    Some(t) if Instant::now() >= t => "half_open",
                    Some(_) => "open",
                },
                s.last_error.clone(),
            ),
            Err(_) => ("closed", None),
        };
        StatsSnapshot {
            evaluations: self.evaluations.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            input_refused: self.input_refused.load(Ordering::Relaxed),
            p50_us: self.quantile(&counts, total, 0.50),
            p99_us: self.quantile(&counts, total, 0.99),
            breaker,
            last_eval_error: last_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for us in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 12_345, 1_000_000] {
            let b = bucket(us);
            assert!(upper(b) >= us, "{us} -> {b} -> {}", upper(b));
            if b > 0 {
                assert!(upper(b - 1) < us, "{us}");
            }
            assert!((upper(b) as f64) <= (us as f64) * 1.125 + 1.0);
        }
    }

    #[test]
    fn quantiles_follow_the_data() {
        let s = PolicyStats::default();
        for _ in 0..98 {
            s.record_ok(Duration::from_micros(20));
        }
        s.record_ok(Duration::from_micros(900));
        s.record_ok(Duration::from_micros(900));
        let snap = s.snapshot();
        assert_eq!(snap.evaluations, 100);
        assert!((20..=23).contains(&snap.p50_us.unwrap()));
        assert!((900..=1013).contains(&snap.p99_us.unwrap()));
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_once() {
        let s = PolicyStats::default();
        let err = PolicyError::Timeout(5);
        for _ in 0..BREAKER_FAILURES - 1 {
            assert!(s.admit());
            s.record_err(Duration::ZERO, &err);
        }
        assert!(s.admit());
        s.record_err(Duration::ZERO, &err);
        assert!(!s.admit(), "open after {BREAKER_FAILURES} failures");
        assert_eq!(s.snapshot().breaker, "open");
        // Pretend the cool-down passed: one probe is admitted, the next caller is not.
        s.state.lock().unwrap().open_until = Some(Instant::now());
        assert!(s.admit());
        assert!(!s.admit());
        s.record_ok(Duration::ZERO);
        assert!(s.admit());
        assert_eq!(s.snapshot().breaker, "closed");
    }

    #[test]
    fn refusals_that_are_not_the_policys_fault_never_open_the_breaker() {
        let s = PolicyStats::default();
        let busy = PolicyError::PoolExhausted(128);
        let big = PolicyError::InputTooLarge("2000000 bytes".into());
        for _ in 0..BREAKER_FAILURES * 4 {
            assert!(s.admit());
            s.record_refused(&busy);
            assert!(s.admit());
            s.record_refused(&big);
        }
        let snap = s.snapshot();
        assert_eq!(snap.breaker, "closed");
        assert_eq!((snap.errors, snap.evaluations), (0, 0));
        assert_eq!(snap.busy, u64::from(BREAKER_FAILURES * 4));
        assert_eq!(snap.input_refused, u64::from(BREAKER_FAILURES * 4));
        // Nor do they count towards the consecutive failures of a real fault.
        let fault = PolicyError::Trap("unreachable".into());
        for _ in 0..BREAKER_FAILURES - 1 {
            s.record_err(Duration::ZERO, &fault);
            s.record_refused(&busy);
        }
        assert_eq!(s.snapshot().breaker, "closed");
        s.record_err(Duration::ZERO, &fault);
        assert_eq!(s.snapshot().breaker, "open");
    }

    #[test]
    fn a_probe_refused_for_load_is_handed_back() {
        let s = PolicyStats::default();
        let err = PolicyError::Timeout(5);
        for _ in 0..BREAKER_FAILURES {
            s.record_err(Duration::ZERO, &err);
        }
        s.state.lock().unwrap().open_until = Some(Instant::now());
        assert!(s.admit(), "the probe");
        s.record_refused(&PolicyError::PoolExhausted(1));
        // Without the hand-back, `probing` would stay set and the breaker would never close.
        assert!(s.admit(), "the next caller probes");
        s.record_ok(Duration::ZERO);
        assert_eq!(s.snapshot().breaker, "closed");
    }
}
