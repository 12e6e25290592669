//! Admission for one model: may a request be sent now? Three things can say no — the circuit
//! breaker, a 429 cool-down and a quota disable — and `Gatekeeper` combines them.
//!
//! The breaker is Envoy's outlier detection (reference §9.2, §10 stage D): `failures` consecutive
//! health failures open it for `base × n` (n = times opened in a row), capped at `max`; after that
//! period exactly one half-open probe goes through; its success closes the breaker and resets the
//! growth, its failure re-opens it for the next, longer period.
//!
//! Pure state over caller-given instants: never reads the clock, never locks — its owner
//! (`ModelHealth`) holds its short lock around every call.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// May a request go to the model now?
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    Allowed,
    /// The breaker is half-open and this caller carries its one probe: report the outcome with
    /// `record_success`, `record_failure` or `record_abandoned`.
    Probe,
    Rejected(Unavailable),
}

/// Why a model may not be tried now. Serialises as `{"reason": "cooling_down", "retry_in_ms": 800}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unavailable {
    /// The breaker is open.
    Open {
        #[serde(skip)]
        until: Instant,
        retry_in_ms: u64,
    },
    /// Half-open, and another caller's probe is out: wait for its answer.
    Probing,
    /// Rate limited (429): waiting out the provider's retry-after.
    CoolingDown {
        #[serde(skip)]
        until: Instant,
        retry_in_ms: u64,
    },
    /// Quota or credit exhausted.
    Disabled {
        #[serde(skip)]
        until: Instant,
        retry_in_ms: u64,
    },
    /// Drained by an operator: no new requests until it is brought back.
    Drained,
    /// An operator forced the breaker open.
    ForcedOpen,
}

impl Unavailable {
    /// When the model may be tried again; `None` while a probe decides.
    pub fn until(&self) -> Option<Instant> {
        match *self {
            Unavailable::Open { until, .. }
            | Unavailable::CoolingDown { until, .. }
            | Unavailable::Disabled { until, .. } => Some(until),
            // A probe may answer any moment; an operator may undo an override any moment.
            Unavailable::Probing | Unavailable::Drained | Unavailable::ForcedOpen => None,
        }
    }

    /// For explanations: `"breaker open, retry in 12.5 s"`.
    pub fn describe(&self) -> String {
        let retry_in = |ms: u64| format!("retry in {:.1} s", ms as f64 / 1000.0);
        match *self {
            Unavailable::Open { retry_in_ms, .. } => {
                format!("breaker open, {}", retry_in(retry_in_ms))
            }
            Unavailable::Probing => "breaker half-open, a probe is in flight".to_owned(),
            Unavailable::CoolingDown { retry_in_ms, .. } => {
                format!("rate limited, {}", retry_in(retry_in_ms))
            }
            Unavailable::Disabled { retry_in_ms, .. } => {
                format!("quota exhausted, {}", retry_in(retry_in_ms))
            }
            Unavailable::Drained => "drained by an operator".to_owned(),
            Unavailable::ForcedOpen => "breaker forced open by an operator".to_owned(),
        }
    }

    /// Low-cardinality label for filters, logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Unavailable::Open { .. } => "breaker_open",
            Unavailable::Probing => "breaker_probing",
            Unavailable::CoolingDown { .. } => "rate_limited",
            Unavailable::Disabled { .. } => "quota_exhausted",
            Unavailable::Drained => "drained",
            Unavailable::ForcedOpen => "breaker_forced_open",
        }
    }
}

/// What to tell a client none of whose candidates may be tried now: when to come back, and
/// whether every one of them is only waiting out an upstream 429 (a rate limit the client can
/// wait for) rather than a breaker, a probe or a quota (the service is down for now).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comeback {
    /// The soonest any of them may serve again, rounded up to whole seconds, at least 1 s (the
    /// unit of a `retry-after` header; a probe in flight may answer any moment, so it counts
    /// as now).
    pub after: Duration,
    /// Every one of them is cooling down after a 429.
    pub rate_limited: bool,
}

/// The `Comeback` of some unavailable models; `None` when there are none.
pub fn comeback(now: Instant, reasons: impl IntoIterator<Item = Unavailable>) -> Option<Comeback> {
    let mut soonest: Option<Duration> = None;
    let mut rate_limited = true;
    for why in reasons {
        rate_limited &= matches!(why, Unavailable::CoolingDown { .. });
        let wait = why
            .until()
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
    }
    let wait = soonest?;
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(Comeback {
        after: Duration::from_secs(secs.max(1)),
        rate_limited,
    })
}

/// The breaker, a 429 cool-down and a quota disable: everything that decides admission.
#[derive(Debug, Default)]
pub(crate) struct Gatekeeper {
    pub breaker: Breaker,
    cooling_until: Option<Instant>,
    disabled_until: Option<Instant>,
}

impl Gatekeeper {
    /// `verdict`, taking the half-open probe when it is handed out.
    pub fn admit(&mut self, now: Instant, policy: &BreakerPolicy) -> Admission {
        let verdict = self.verdict(now, policy);
        if verdict == Admission::Probe {
            self.breaker.take_probe(now);
        }
        verdict
    }

    /// The rule of `admit` without taking the probe; `None` = may be tried now.
    pub fn available(&self, now: Instant, policy: &BreakerPolicy) -> Option<Unavailable> {
        match self.verdict(now, policy) {
            Admission::Rejected(why) => Some(why),
            Admission::Allowed | Admission::Probe => None,
        }
    }

    /// Rate limited until `until`; an earlier deadline never shortens a later one (LiteLLM #40130).
    pub fn cool_down(&mut self, until: Instant) {
        extend(&mut self.cooling_until, until);
    }

    pub fn disable(&mut self, until: Instant) {
        extend(&mut self.disabled_until, until);
    }

    /// A deadline block (quota, 429, open breaker) wins over the probe, so a probe is never spent
    /// while the model is cooling down; of several deadlines the latest is reported, since that is
    /// when the model is really back.
    fn verdict(&self, now: Instant, policy: &BreakerPolicy) -> Admission {
        let gate = self.breaker.gate(now, policy);
        let active = |until: Option<Instant>| until.filter(|u| *u > now);
        let open = match gate {
            Gate::Open(until) => Some(until),
            _ => None,
        };
        let retry_in_ms = |until| millis_until(now, until);
        let blocks = [
            active(self.disabled_until).map(|until| Unavailable::Disabled {
                until,
                retry_in_ms: retry_in_ms(until),
            }),
            open.map(|until| Unavailable::Open {
                until,
                retry_in_ms: retry_in_ms(until),
            }),
            active(self.cooling_until).map(|until| Unavailable::CoolingDown {
                until,
                retry_in_ms: retry_in_ms(until),
            }),
        ];
        match (blocks.into_iter().flatten().max_by_key(|u| u.until()), gate) {
            (Some(block), _) => Admission::Rejected(block),
            (None, Gate::Probing) => Admission::Rejected(Unavailable::Probing),
            (None, Gate::ProbeFree) => Admission::Probe,
            (None, Gate::Closed | Gate::Open(_)) => Admission::Allowed,
        }
    }
}

fn extend(slot: &mut Option<Instant>, until: Instant) {
    *slot = Some(slot.map_or(until, |current| current.max(until)));
}

/// What the breaker says, for snapshots and explanations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    /// Rejecting until `until` (`retry_in_ms` from the snapshot's `now`).
    Open {
        #[serde(skip)]
        until: Instant,
        retry_in_ms: u64,
    },
    /// The open period is over: one probe may go (or is on its way).
    HalfOpen,
}

/// The breaker's knobs, copied out of `HealthConfig`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerPolicy {
    /// Consecutive health failures that open it (0 is treated as 1).
    pub failures: u32,
    /// ...or this share of failures among the last `window` attempts while closed.
    pub failure_rate: f64,
    /// 1 to 32 attempts.
    pub window: u32,
    pub base: Duration,
    pub max: Duration,
    /// A probe that reports nothing for this long is presumed lost and its slot freed.
    pub probe_lease: Duration,
}

/// Whether the breaker lets a request through at `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Gate {
    Closed,
    Open(Instant),
    /// Half-open and the probe slot is free.
    ProbeFree,
    /// Half-open and a probe is out.
    Probing,
}

#[derive(Debug, Default)]
pub(crate) struct Breaker {
    consecutive: u32,
    opens_in_a_row: u32,
    open: Option<Opened>,
    /// Outcomes of the latest attempts while closed, newest in bit 0 (1 = health failure).
    recent: u32,
    /// How many bits of `recent` are filled (≤ the policy's window).
    recent_len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Opened {
    until: Instant,
    /// When the half-open probe was handed out, if one is out.
    probe_at: Option<Instant>,
}

impl Breaker {
    pub fn gate(&self, now: Instant, policy: &BreakerPolicy) -> Gate {
        match self.open {
            None => Gate::Closed,
            Some(o) if now < o.until => Gate::Open(o.until),
            Some(Opened {
                probe_at: Some(at), ..
            }) if now < deadline(at, policy.probe_lease) => Gate::Probing,
            Some(_) => Gate::ProbeFree,
        }
    }

    /// Hand out the half-open probe (the caller saw `Gate::ProbeFree` under the same lock).
    pub fn take_probe(&mut self, now: Instant) {
        if let Some(o) = self.open.as_mut() {
            o.probe_at = Some(now);
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open {
            None => BreakerState::Closed,
            Some(o) if now < o.until => BreakerState::Open {
                until: o.until,
                retry_in_ms: millis_until(now, o.until),
            },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// A success. While open (before the deadline) it comes from an attempt started before the
    /// breaker opened and proves nothing about now: ignored. Half-open, it closes the breaker.
    pub fn on_success(&mut self, now: Instant, policy: &BreakerPolicy) {
        match self.open {
            Some(o) if now < o.until => {}
            Some(_) => {
                // The probe succeeded: closed, with a fresh record.
                self.open = None;
                self.consecutive = 0;
                self.opens_in_a_row = 0;
                self.forget();
            }
            None => {
                self.consecutive = 0;
                self.opens_in_a_row = 0;
                self.remember(false, policy);
            }
        }
    }

    /// A health failure. Half-open results cannot be told apart from a late attempt's, so any
    /// health failure after the deadline re-opens (rare: it needs an attempt longer than the period).
    pub fn on_failure(&mut self, now: Instant, policy: &BreakerPolicy) {
        match self.open {
            Some(o) if now < o.until => {}
            Some(_) => self.trip(now, policy),
            None => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.remember(true, policy);
                if self.consecutive >= policy.failures.max(1) || self.rate_exceeded(policy) {
                    self.trip(now, policy);
                }
            }
        }
    }

    fn remember(&mut self, failed: bool, policy: &BreakerPolicy) {
        let window = policy.window.clamp(1, 32);
        let mask = if window == 32 {
            u32::MAX
        } else {
            (1 << window) - 1
        };
        self.recent = ((self.recent << 1) | u32::from(failed)) & mask;
        self.recent_len = (self.recent_len + 1).min(window);
    }

    fn forget(&mut self) {
        self.recent = 0;
        self.recent_len = 0;
    }

    /// A full window whose failure share reaches the policy's rate.
    fn rate_exceeded(&self, policy: &BreakerPolicy) -> bool {
        self.recent_len >= policy.window.clamp(1, 32)
            && f64::from(self.recent.count_ones())
                >= policy.failure_rate * f64::from(self.recent_len)
    }

    /// An outcome that says nothing about the model's health (client error, 429, abandoned):
    /// frees the half-open probe slot so another caller can probe.
    pub fn on_neutral(&mut self, now: Instant) {
        if let Some(o) = self.open.as_mut()
            && now >= o.until
        {
            o.probe_at = None;
        }
    }

    fn trip(&mut self, now: Instant, policy: &BreakerPolicy) {
        self.forget();
        self.consecutive = self.consecutive.max(policy.failures.max(1));
        self.opens_in_a_row = self.opens_in_a_row.saturating_add(1);
        let period = policy
            .base
            .saturating_mul(self.opens_in_a_row)
            .min(policy.max);
        self.open = Some(Opened {
            until: deadline(now, period),
            probe_at: None,
        });
    }
}

/// `now + wait`, without the overflow panic of `Instant + Duration` on absurd configs.
pub(crate) fn deadline(now: Instant, wait: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(wait.min(FAR)).unwrap_or(now)
}

/// Whole milliseconds from `now` to `until` (0 once passed).
pub(crate) fn millis_until(now: Instant, until: Instant) -> u64 {
    u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
