//! Statistics over time for model health, all O(1) in memory and fed caller-given instants:
//!
//! - decayed estimators: `PeakEwma` (TTFT), `DecayedMean` (TPOT, time to fail, output tokens),
//!   `DecayedCounts` (successes and failures for the Beta-prior reliability);
//! - `Window`, the recent-window recorder behind `GET /ai/performance`: a ring of 10-second
//!   buckets, each with outcome counts, token and cost sums and two fixed-size log-scaled latency
//!   histograms (total, TTFT); percentiles come from merging the buckets inside the window.
//!
//! Memory is fixed per model — the ring is allocated at the first recording and never grown —
//! however many requests arrive. Nothing here may keep individual samples or read the clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use switchyard_types::error::ErrorKind;

/// Milliseconds as `f64`, the unit of every estimate.
pub(crate) use switchyard_types::clock::ms as millis;

/// Weight left to the past after `elapsed`: exp(−elapsed / τ).
fn decay(elapsed: Duration, tau: Duration) -> f64 {
    if tau.is_zero() {
        0.0
    } else {
        (-elapsed.as_secs_f64() / tau.as_secs_f64()).exp()
    }
}

/// Finagle's PeakEWMA (reference §9.3): a higher observation replaces the estimate at once; a
/// lower one pulls it down with weight 1 − exp(−Δt/τ), Δt = time since the previous observation.
/// The first observation replaces the prior outright. Between observations the estimate holds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeakEwma {
    value: f64,
    at: Option<Instant>,
}

impl PeakEwma {
    pub fn observe(&mut self, now: Instant, x: f64, tau: Duration) {
        if !x.is_finite() {
            return;
        }
        self.value = match self.at {
            Some(at) if x < self.value => {
                let w = decay(now.saturating_duration_since(at), tau);
                self.value * w + x * (1.0 - w)
            }
            _ => x,
        };
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// `None` before the first observation.
    pub fn get(&self) -> Option<f64> {
        self.at.map(|_| self.value)
    }
}

/// Time-decayed mean: every sample weighs exp(−age/τ), so a burst of samples and a trickle
/// are both averaged over roughly the last τ. Holds its value between samples.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DecayedMean {
    mean: f64,
    weight: f64,
    at: Option<Instant>,
}

impl DecayedMean {
    pub fn observe(&mut self, now: Instant, x: f64, tau: Duration) {
        if !x.is_finite() {
            return;
        }
        let past = match self.at {
            Some(at) => self.weight * decay(now.saturating_duration_since(at), tau),
            None => 0.0,
        };
        self.mean = (self.mean * past + x) / (past + 1.0);
        self.weight = past + 1.0;
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// `None` before the first sample.
    pub fn get(&self) -> Option<f64> {
        self.at.map(|_| self.mean)
    }
}

/// Success and failure counts decayed by exp(−Δt/τ) (reference §10 reliability).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DecayedCounts {
    successes: f64,
    failures: f64,
    at: Option<Instant>,
}

impl DecayedCounts {
    /// (S, F) as of `now`.
    pub fn at(&self, now: Instant, tau: Duration) -> (f64, f64) {
        match self.at {
            Some(at) => {
                let w = decay(now.saturating_duration_since(at), tau);
                (self.successes * w, self.failures * w)
            }
            None => (0.0, 0.0),
        }
    }

    pub fn add(&mut self, now: Instant, success: bool, tau: Duration) {
        let (s, f) = self.at(now, tau);
        self.successes = s + if success { 1.0 } else { 0.0 };
        self.failures = f + if success { 0.0 } else { 1.0 };
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }
}

/// Width of one time bucket: the window slides in steps of this much.
const BUCKET: Duration = Duration::from_secs(10);
/// At most an hour of buckets, whatever the configured window (bounds memory on odd configs).
const MAX_BUCKETS: u64 = 360;
/// Ratio between consecutive histogram bounds: reporting a bucket's geometric midpoint is off by
/// at most √1.04 − 1 ≈ 2 %, and `HIST_LEN` buckets span 1 ms … ~21 min (bucket 0 holds < 1 ms,
/// the last one everything longer).
const GAMMA: f64 = 1.04;
const HIST_LEN: usize = 360;

/// Every kind, in `kind_index` order, to label the per-kind failure counters.
const KINDS: [ErrorKind; 14] = [
    ErrorKind::RateLimited,
    ErrorKind::QuotaExhausted,
    ErrorKind::Overloaded,
    ErrorKind::Server,
    ErrorKind::Timeout,
    ErrorKind::Connect,
    ErrorKind::StreamCut,
    ErrorKind::MalformedResponse,
    ErrorKind::ContextLength,
    ErrorKind::InvalidRequest,
    ErrorKind::Auth,
    ErrorKind::PermissionDenied,
    ErrorKind::NotFound,
    ErrorKind::Unsupported,
];

/// Exhaustive on purpose: a new `ErrorKind` must get its own counter here.
fn kind_index(kind: ErrorKind) -> usize {
    match kind {
        ErrorKind::RateLimited => 0,
        ErrorKind::QuotaExhausted => 1,
        ErrorKind::Overloaded => 2,
        ErrorKind::Server => 3,
        ErrorKind::Timeout => 4,
        ErrorKind::Connect => 5,
        ErrorKind::StreamCut => 6,
        ErrorKind::MalformedResponse => 7,
        ErrorKind::ContextLength => 8,
        ErrorKind::InvalidRequest => 9,
        ErrorKind::Auth => 10,
        ErrorKind::PermissionDenied => 11,
        ErrorKind::NotFound => 12,
        ErrorKind::Unsupported => 13,
    }
}

/// One model's recent traffic, as served by `GET /ai/performance`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Performance {
    /// The window covered, in seconds (a whole number of 10-second buckets; the oldest bucket
    /// may be partly outside it).
    pub window_s: u64,
    /// Attempts that ended (successes + failures).
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    /// Failures by `ErrorKind::label`, only kinds that occurred.
    pub failures_by_kind: BTreeMap<&'static str, u64>,
    /// successes / requests; `None` without requests.
    pub success_rate: Option<f64>,
    /// Total latency of successful attempts.
    pub latency_ms: Percentiles,
    /// Time to first token of successful attempts.
    pub ttft_ms: Percentiles,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// Distribution summary; values are `None` when there is no sample. Percentiles are within ~2 %.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Clone, Copy)]
struct Histogram {
    counts: [u32; HIST_LEN],
    count: u64,
    sum_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Histogram {
    const EMPTY: Histogram = Histogram {
        counts: [0; HIST_LEN],
        count: 0,
        sum_ms: 0.0,
        min_ms: f64::INFINITY,
        max_ms: 0.0,
    };

    fn index(ms: f64) -> usize {
        if ms < 1.0 {
            0
        } else {
            // `as` saturates; the min keeps huge values in the last bucket.
            ((ms.ln() / GAMMA.ln()).floor() as usize + 1).min(HIST_LEN - 1)
        }
    }

    /// Geometric midpoint of bucket `i` (bucket `i ≥ 1` holds `[γ^(i−1), γ^i)` ms).
    fn value(i: usize) -> f64 {
        if i == 0 {
            0.5
        } else {
            GAMMA.powf(i as f64 - 0.5)
        }
    }

    fn record(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let i = Histogram::index(ms);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.count += 1;
        self.sum_ms += ms;
        self.min_ms = self.min_ms.min(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// Nearest-rank quantile, clamped to the observed range (the true value lies inside it).
    fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                // The last bucket is open-ended: its best estimate is the maximum seen.
                if i == HIST_LEN - 1 {
                    return Some(self.max_ms);
                }
                return Some(Histogram::value(i).clamp(self.min_ms, self.max_ms));
            }
        }
        Some(self.max_ms)
    }

    fn summary(&self) -> Percentiles {
        if self.count == 0 {
            return Percentiles::default();
        }
        Percentiles {
            count: self.count,
            mean: Some(self.sum_ms / self.count as f64),
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: Some(self.max_ms),
        }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    /// Which 10-second bucket since `origin` this slot holds; `u64::MAX` = never used.
    epoch: u64,
    successes: u64,
    failures: [u64; KINDS.len()],
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    total: Histogram,
    ttft: Histogram,
}

impl Slot {
    const EMPTY: Slot = Slot {
        epoch: u64::MAX,
        successes: 0,
        failures: [0; KINDS.len()],
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0.0,
        total: Histogram::EMPTY,
        ttft: Histogram::EMPTY,
    };
}

pub(crate) struct Window {
    /// Buckets in the window (= slots in the ring).
    span: u64,
    /// Start of bucket 0: the first recording.
    origin: Option<Instant>,
    /// Empty until the first recording, then exactly `span` slots forever.
    slots: Vec<Slot>,
}

impl Window {
    pub fn new(window: Duration) -> Window {
        let span = u64::try_from(window.as_nanos().div_ceil(BUCKET.as_nanos()))
            .unwrap_or(MAX_BUCKETS)
            .clamp(1, MAX_BUCKETS);
        Window {
            span,
            origin: None,
            slots: Vec::new(),
        }
    }

    pub fn success(&mut self, now: Instant, total: Duration, ttft: Duration) {
        let slot = self.slot(now);
        slot.successes += 1;
        slot.total.record(total.as_secs_f64() * 1000.0);
        slot.ttft.record(ttft.as_secs_f64() * 1000.0);
    }

    pub fn failure(&mut self, now: Instant, kind: ErrorKind) {
        self.slot(now).failures[kind_index(kind)] += 1;
    }

    pub fn usage(&mut self, now: Instant, input_tokens: u32, output_tokens: u32, cost_usd: f64) {
        let slot = self.slot(now);
        slot.input_tokens += u64::from(input_tokens);
        slot.output_tokens += u64::from(output_tokens);
        if cost_usd.is_finite() && cost_usd > 0.0 {
            slot.cost_usd += cost_usd;
        }
    }

    pub fn performance(&self, now: Instant) -> Performance {
        let mut total = Histogram::EMPTY;
        let mut ttft = Histogram::EMPTY;
        let mut failures = [0u64; KINDS.len()];
        let (mut successes, mut input_tokens, mut output_tokens, mut cost_usd) = (0, 0, 0, 0.0);
        for slot in self.live(now) {
            successes += slot.successes;
            for (sum, n) in failures.iter_mut().zip(slot.failures) {
                *sum += n;
            }
            input_tokens += slot.input_tokens;
            output_tokens += slot.output_tokens;
            cost_usd += slot.cost_usd;
            total.merge(&slot.total);
            ttft.merge(&slot.ttft);
        }
        let failures_by_kind: BTreeMap<&'static str, u64> = KINDS
            .iter()
            .zip(failures)
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| (kind.label(), n))
            .collect();
        let failed: u64 = failures.iter().sum();
        let requests = successes + failed;
        Performance {
            window_s: self.span * BUCKET.as_secs(),
            requests,
            successes,
            failures: failed,
            failures_by_kind,
            success_rate: (requests > 0).then(|| successes as f64 / requests as f64),
            latency_ms: total.summary(),
            ttft_ms: ttft.summary(),
            input_tokens,
            output_tokens,
            cost_usd,
        }
    }

    /// The `q` quantile (ms) of recent successes' time to first token (`first_token`) or total
    /// latency, with how many successes it is over: what an adaptive hedge waits for.
    pub fn quantile(&self, now: Instant, q: f64, first_token: bool) -> (u64, Option<f64>) {
        let mut merged = Histogram::EMPTY;
        for slot in self.live(now) {
            merged.merge(if first_token { &slot.ttft } else { &slot.total });
        }
        (merged.count, merged.quantile(q))
    }

    /// The slots whose bucket lies within the window ending at `now`.
    fn live(&self, now: Instant) -> impl Iterator<Item = &Slot> {
        let current = self.epoch(now);
        self.slots
            .iter()
            .filter(move |s| s.epoch <= current && s.epoch + self.span > current)
    }

    fn epoch(&self, now: Instant) -> u64 {
        self.origin.map_or(0, |origin| {
            now.saturating_duration_since(origin).as_secs() / BUCKET.as_secs()
        })
    }

    /// The slot for `now`, cleared first if it still holds an older bucket.
    fn slot(&mut self, now: Instant) -> &mut Slot {
        self.origin.get_or_insert(now);
        let epoch = self.epoch(now);
        if self.slots.is_empty() {
            self.slots = vec![Slot::EMPTY; self.span as usize];
        }
        // The index is below `span` = `slots.len()`.
        let slot = &mut self.slots[(epoch % self.span) as usize];
        if slot.epoch != epoch {
            *slot = Slot::EMPTY;
            slot.epoch = epoch;
        }
        slot
    }

    /// Bytes this window holds, for the test that memory stays flat.
    #[cfg(test)]
    fn footprint(&self) -> usize {
        std::mem::size_of::<Window>() + self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn kinds_table_matches_the_index() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(kind_index(*kind), i);
        }
    }

    #[test]
    fn percentiles_of_a_known_sample_within_two_percent() {
        let now = Instant::now();
        let mut w = Window::new(5 * MINUTE);
        // 1..=1000 ms, shuffled by a stride so order does not matter.
        for k in 0..1000u64 {
            let ms = (k * 7919) % 1000 + 1;
            w.success(
                now,
                Duration::from_millis(ms),
                Duration::from_millis(ms / 10),
            );
        }
        let p = w.performance(now);
        let close = |got: Option<f64>, want: f64| {
            let got = got.unwrap_or(f64::NAN);
            assert!((got - want).abs() <= want * 0.02, "got {got}, want {want}");
        };
        close(p.latency_ms.p50, 500.0);
        close(p.latency_ms.p95, 950.0);
        close(p.latency_ms.p99, 990.0);
        close(p.latency_ms.mean, 500.5);
        assert_eq!(p.latency_ms.max, Some(1000.0));
        close(p.ttft_ms.p50, 50.0);
        assert_eq!(p.latency_ms.count, 1000);
        assert_eq!(
            (p.requests, p.successes, p.success_rate),
            (1000, 1000, Some(1.0))
        );
    }

    #[test]
    fn counts_failures_by_kind_and_sums_usage() {
        let now = Instant::now();
        let mut w = Window::new(5 * MINUTE);
        w.success(now, Duration::from_millis(10), Duration::from_millis(5));
        w.failure(now, ErrorKind::Timeout);
        w.failure(now, ErrorKind::Timeout);
        w.failure(now, ErrorKind::RateLimited);
        w.usage(now, 100, 20, 0.5);
        w.usage(now, 50, 10, 0.25);
        let p = w.performance(now);
        assert_eq!((p.requests, p.successes, p.failures), (4, 1, 3));
        assert_eq!(p.success_rate, Some(0.25));
        let kinds: Vec<_> = p.failures_by_kind.into_iter().collect();
        assert_eq!(kinds, vec![("rate_limited", 1), ("timeout", 2)]);
        assert_eq!((p.input_tokens, p.output_tokens), (150, 30));
        assert!((p.cost_usd - 0.75).abs() < 1e-12);
        assert_eq!(p.window_s, 300);
        // No sample: everything empty, no division by zero.
        let empty = Window::new(5 * MINUTE).performance(now);
        assert_eq!((empty.requests, empty.success_rate), (0, None));
        assert_eq!(empty.latency_ms, Percentiles::default());
    }

    #[test]
    fn old_buckets_drop_out_after_the_window() {
        let start = Instant::now();
        let mut w = Window::new(MINUTE);
        w.failure(start, ErrorKind::Server);
        w.success(
            start + Duration::from_secs(30),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!(w.performance(start + Duration::from_secs(59)).requests, 2);
        // The first bucket [0, 10 s) leaves at 60 s; the second one [30 s, 40 s) at 90 s.
        let p = w.performance(start + Duration::from_secs(60));
        assert_eq!((p.requests, p.failures), (1, 0));
        assert_eq!(w.performance(start + Duration::from_secs(90)).requests, 0);
        // A slot reused for a new bucket starts from zero.
        w.success(start + 7 * MINUTE, Duration::from_secs(2), Duration::ZERO);
        let p = w.performance(start + 7 * MINUTE);
        assert_eq!((p.requests, p.latency_ms.max), (1, Some(2000.0)));
    }

    #[test]
    fn memory_is_flat_under_a_million_recordings() {
        let start = Instant::now();
        let mut w = Window::new(5 * MINUTE);
        w.success(start, Duration::from_millis(1), Duration::ZERO);
        let before = w.footprint();
        assert_eq!(w.slots.len(), 30);
        for i in 0..1_000_000u64 {
            // One recording per millisecond: ~17 minutes, so the ring wraps several times.
            let now = start + Duration::from_millis(i);
            w.success(now, Duration::from_micros(i % 100_000_000), Duration::ZERO);
            if i % 3 == 0 {
                w.failure(now, ErrorKind::Server);
            }
        }
        assert_eq!(w.footprint(), before);
        assert_eq!((w.slots.len(), w.slots.capacity()), (30, 30));
        // Under 100 KiB per model, whatever the traffic.
        assert!(before < 100 * 1024, "{before}");
        assert!(
            w.performance(start + Duration::from_millis(999_999))
                .requests
                > 0
        );
    }

    #[test]
    fn histogram_edges() {
        let mut h = Histogram::EMPTY;
        for ms in [0.0, 0.3, f64::NAN, -5.0, 1e12] {
            h.record(ms);
        }
        assert_eq!(h.counts[0], 4);
        assert_eq!(h.counts[HIST_LEN - 1], 1);
        assert_eq!(h.quantile(1.0), Some(1e12));
        assert_eq!(h.quantile(0.5), Some(0.5));
    }
}
