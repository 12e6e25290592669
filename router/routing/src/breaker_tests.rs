//! Mostly through `ModelHealth`, as the executor and scorer see it.
use std::sync::Arc;

use tokio::time::advance;

use super::*;
use crate::health::{HealthConfig, ModelHealth};
use switchyard_types::error::{ErrorKind, ProviderError};
use switchyard_types::ids::ModelId;

const SEC: Duration = Duration::from_secs(1);

fn model() -> Arc<ModelHealth> {
    let config = Arc::new(HealthConfig::default());
    Arc::new(ModelHealth::new(ModelId::new("m"), config))
}

fn fail(h: &ModelHealth, kind: ErrorKind) {
    fail_with(h, ProviderError::new(kind, "no"));
}

fn fail_with(h: &ModelHealth, err: ProviderError) {
    h.record_failure(Instant::now(), &err, Duration::from_millis(10));
}

fn succeed(h: &ModelHealth) {
    h.record_success(Instant::now(), SEC / 100, SEC / 50, 2);
}

fn rate_limited(secs: u64) -> ProviderError {
    ProviderError::new(ErrorKind::RateLimited, "slow down")
        .with_retry_after(Some(SEC * secs as u32))
}

fn rejected(h: &ModelHealth) -> Option<Unavailable> {
    match h.admit(Instant::now()) {
        Admission::Rejected(why) => Some(why),
        Admission::Allowed | Admission::Probe => None,
    }
}

fn open_until(until: Instant) -> Option<Unavailable> {
    let retry_in_ms = millis_until(Instant::now(), until);
    Some(Unavailable::Open { until, retry_in_ms })
}

fn breaker(h: &ModelHealth) -> (BreakerState, u32) {
    let s = h.snapshot(Instant::now());
    (s.breaker, s.consecutive_failures)
}

#[tokio::test(start_paused = true)]
async fn a_steady_failure_rate_opens_it_without_five_in_a_row() {
    let h = model();
    let t0 = Instant::now();
    // 19 attempts, one failure in four, never two in a row: the window is not full yet.
    for i in 0..19 {
        if i % 4 == 3 {
            fail(&h, ErrorKind::Server);
        } else {
            succeed(&h);
        }
    }
    assert_eq!(breaker(&h).0, BreakerState::Closed);
    // The 20th attempt fails: 5 of the last 20 = 25% → open.
    fail(&h, ErrorKind::Server);
    assert_eq!(rejected(&h), open_until(t0 + SEC * 30));
    // A successful probe closes it with a fresh record: the old failures do not re-trip it.
    advance(SEC * 30).await;
    assert_eq!(h.admit(Instant::now()), Admission::Probe);
    succeed(&h);
    fail(&h, ErrorKind::Server);
    assert_eq!(breaker(&h).0, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_low_failure_rate_never_opens_it() {
    let h = model();
    for i in 0..200 {
        if i % 10 == 9 {
            fail(&h, ErrorKind::Server);
        } else {
            succeed(&h);
        }
    }
    assert_eq!(breaker(&h).0, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn fifth_failure_opens_then_exactly_one_probe() {
    let h = model();
    let t0 = Instant::now();
    for _ in 0..4 {
        fail(&h, ErrorKind::Server);
    }
    assert_eq!(
        (h.admit(t0), breaker(&h)),
        (Admission::Allowed, (BreakerState::Closed, 4))
    );
    fail(&h, ErrorKind::Timeout);
    assert_eq!(rejected(&h), open_until(t0 + SEC * 30));
    // A straggler's success inside the open period proves nothing about now.
    succeed(&h);
    advance(SEC * 29).await;
    assert_eq!(rejected(&h), open_until(t0 + SEC * 30));
    advance(SEC).await;
    let now = Instant::now();
    for _ in 0..3 {
        // Looking does not take the probe.
        assert_eq!(h.snapshot(now).available, None);
    }
    assert_eq!(breaker(&h).0, BreakerState::HalfOpen);
    assert_eq!(h.admit(now), Admission::Probe);
    for _ in 0..3 {
        assert_eq!(rejected(&h), Some(Unavailable::Probing));
    }
    assert_eq!(h.snapshot(now).available, Some(Unavailable::Probing));
    succeed(&h);
    assert_eq!(
        (h.admit(now), breaker(&h)),
        (Admission::Allowed, (BreakerState::Closed, 0))
    );
    // Growth was reset: the next opening lasts the base period again.
    for _ in 0..5 {
        fail(&h, ErrorKind::Overloaded);
    }
    assert_eq!(rejected(&h), open_until(now + SEC * 30));
}

#[tokio::test(start_paused = true)]
async fn failed_probes_reopen_for_longer_up_to_the_cap() {
    let h = model();
    for _ in 0..5 {
        fail(&h, ErrorKind::Connect);
    }
    let mut periods = Vec::new();
    for _ in 0..12 {
        let until = rejected(&h).and_then(|why| why.until());
        let period = until.map_or(Duration::ZERO, |u| u - Instant::now());
        periods.push(period.as_secs());
        advance(period).await;
        assert_eq!(h.admit(Instant::now()), Admission::Probe);
        fail(&h, ErrorKind::StreamCut);
    }
    let expected: Vec<u64> = (1..=12u64).map(|n| (30 * n).min(300)).collect();
    assert_eq!(periods, expected);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_rate_limits_never_open_and_successes_reset_the_count() {
    use ErrorKind::*;
    let h = model();
    for kind in [
        InvalidRequest,
        ContextLength,
        Auth,
        PermissionDenied,
        NotFound,
        RateLimited,
        Unsupported,
    ] {
        for _ in 0..10 {
            fail(&h, kind);
        }
    }
    assert_eq!(breaker(&h), (BreakerState::Closed, 0));
    // Nor do they touch reliability: none of them says the model is unwell.
    assert_eq!(h.snapshot(Instant::now()).reliability, 0.9);
    advance(SEC).await;
    for _ in 0..4 {
        fail(&h, Server);
    }
    succeed(&h);
    for _ in 0..4 {
        fail(&h, Server);
    }
    assert_eq!(breaker(&h), (BreakerState::Closed, 4));
    assert_eq!(h.admit(Instant::now()), Admission::Allowed);
}

#[tokio::test(start_paused = true)]
async fn uninformative_outcomes_give_the_probe_back_and_a_lost_one_expires() {
    let h = model();
    for _ in 0..5 {
        fail(&h, ErrorKind::Server);
    }
    advance(SEC * 30).await;
    let now = Instant::now();
    assert_eq!(h.admit(now), Admission::Probe);
    fail(&h, ErrorKind::InvalidRequest);
    assert_eq!(h.admit(now), Admission::Probe);
    h.record_abandoned(now);
    assert_eq!(h.admit(now), Admission::Probe);
    // Nobody reports: after `probe_lease` the slot is presumed lost.
    advance(SEC * 59).await;
    assert_eq!(rejected(&h), Some(Unavailable::Probing));
    advance(SEC).await;
    assert_eq!(h.admit(Instant::now()), Admission::Probe);
    h.record_abandoned(Instant::now());
    // A straggler's 429 while half-open: wait out the cool-down before probing.
    fail_with(&h, rate_limited(5));
    assert!(matches!(
        rejected(&h),
        Some(Unavailable::CoolingDown { .. })
    ));
    advance(SEC * 5).await;
    assert_eq!(h.admit(Instant::now()), Admission::Probe);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_cools_down_extends_never_shortens_and_is_not_a_failure() {
    let h = model();
    let t0 = Instant::now();
    let cooling = |until: Instant| {
        let retry_in_ms = millis_until(Instant::now(), until);
        Some(Unavailable::CoolingDown { until, retry_in_ms })
    };
    fail_with(&h, rate_limited(10));
    assert_eq!(rejected(&h), cooling(t0 + SEC * 10));
    advance(SEC * 2).await;
    fail_with(&h, rate_limited(3));
    assert_eq!(rejected(&h), cooling(t0 + SEC * 10));
    fail_with(&h, rate_limited(20));
    assert_eq!(rejected(&h), cooling(t0 + SEC * 22));
    for _ in 0..10 {
        fail_with(&h, rate_limited(1));
    }
    let s = h.snapshot(Instant::now());
    assert_eq!(
        (s.breaker, s.consecutive_failures),
        (BreakerState::Closed, 0)
    );
    assert!((s.reliability - 0.9).abs() < 1e-12);
    assert!(
        s.last_error
            .is_some_and(|e| e.starts_with("rate_limited: slow down"))
    );
    advance(SEC * 20).await;
    assert_eq!(h.admit(Instant::now()), Admission::Allowed);
    // No retry-after: one second.
    fail(&h, ErrorKind::RateLimited);
    assert_eq!(rejected(&h), cooling(Instant::now() + SEC));
}

#[tokio::test(start_paused = true)]
async fn quota_disables_for_quota_disable_and_the_latest_deadline_is_reported() {
    let h = model();
    let t0 = Instant::now();
    for _ in 0..5 {
        fail(&h, ErrorKind::Server);
    }
    fail(&h, ErrorKind::QuotaExhausted);
    let s = h.snapshot(t0);
    let until = t0 + SEC * 600;
    assert_eq!(
        s.available,
        Some(Unavailable::Disabled {
            until,
            retry_in_ms: 600_000
        })
    );
    let json = serde_json::to_value((s.available, s.breaker)).unwrap_or_default();
    let want = serde_json::json!([
        {"reason": "disabled", "retry_in_ms": 600_000},
        {"open": {"retry_in_ms": 30_000}}
    ]);
    assert_eq!(json, want);
    assert_eq!(
        s.available.map(|u| u.describe()).as_deref(),
        Some("quota exhausted, retry in 600.0 s")
    );
    advance(SEC * 599).await;
    assert!(matches!(rejected(&h), Some(Unavailable::Disabled { .. })));
    advance(SEC).await;
    assert_eq!(h.admit(Instant::now()), Admission::Probe);
}

#[test]
fn absurd_durations_do_not_overflow() {
    let now = Instant::now();
    assert!(deadline(now, Duration::MAX) > now);
    assert_eq!(millis_until(now + Duration::from_secs(2), now), 0);
}

#[tokio::test(start_paused = true)]
async fn comeback_is_the_soonest_wait_and_rate_limited_only_when_all_cool_down() {
    let now = Instant::now();
    let cooling = |ms: u64| Unavailable::CoolingDown {
        until: now + Duration::from_millis(ms),
        retry_in_ms: ms,
    };
    let open = |ms: u64| Unavailable::Open {
        until: now + Duration::from_millis(ms),
        retry_in_ms: ms,
    };
    assert_eq!(comeback(now, std::iter::empty()), None);
    // Every candidate waits out a 429: the soonest, rounded up to whole seconds.
    assert_eq!(
        comeback(now, [cooling(2500), cooling(1200)]),
        Some(Comeback {
            after: SEC * 2,
            rate_limited: true
        })
    );
    assert_eq!(
        comeback(now, [cooling(3000)]).map(|c| c.after),
        Some(SEC * 3)
    );
    // Never less than a second, even when one is nearly back.
    assert_eq!(comeback(now, [cooling(5)]).map(|c| c.after), Some(SEC));
    // Mixed causes: not a rate limit, and the soonest of all of them.
    assert_eq!(
        comeback(now, [cooling(9000), open(4100)]),
        Some(Comeback {
            after: SEC * 5,
            rate_limited: false
        })
    );
    let disabled = Unavailable::Disabled {
        until: now + SEC * 600,
        retry_in_ms: 600_000,
    };
    let c = comeback(now, [disabled, cooling(7000)]).unwrap();
    assert_eq!((c.after, c.rate_limited), (SEC * 7, false));
    // A probe in flight may answer any moment.
    let c = comeback(now, [Unavailable::Probing, open(30_000)]).unwrap();
    assert_eq!((c.after, c.rate_limited), (SEC, false));
}

#[tokio::test(start_paused = true)]
async fn unavailable_reads_admission_without_taking_the_probe() {
    let h = model();
    assert_eq!(h.unavailable(Instant::now()), None);
    fail_with(&h, rate_limited(2));
    assert!(matches!(
        h.unavailable(Instant::now()),
        Some(Unavailable::CoolingDown { .. })
    ));
    advance(SEC * 2).await;
    for _ in 0..5 {
        fail(&h, ErrorKind::Server);
    }
    advance(SEC * 30).await;
    // Half-open: reading it leaves the probe for the next real caller.
    assert_eq!(h.unavailable(Instant::now()), None);
    assert_eq!(h.admit(Instant::now()), Admission::Probe);
    assert_eq!(h.unavailable(Instant::now()), Some(Unavailable::Probing));
}
