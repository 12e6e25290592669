//! Online anomaly detectors for the gateway's own signals (latency, TTFT, error rate, spend
//! rate, cache hit rate): a robust EWMA of the level with a band from an EWMA of absolute
//! deviations (MAD-like), a warm-up, a threshold in band widths, a minimum absolute change, and
//! consecutive points to fire and to resolve.
//!
//! Pure: a detector is fed one sample at a time and never reads a clock; the caller decides what
//! a sample is (the gateway's alert engine takes one per signal per second).
//!
//! The rule, per sample `x` after the warm-up, with level `m` and mean absolute deviation `d`:
//! σ̂ = 1.2533·d (the Gaussian σ for that mean absolute deviation), band = max(k·σ̂, min_delta);
//! `x` departs when it is beyond the band in the alerting direction. `consecutive` departing
//! samples in a row fire; `consecutive` samples in a row back within half the band resolve
//! (hysteresis). Samples inside the band update `m` and `d` with weight `alpha`; samples outside
//! it update them clipped to the band and with a tenth of the weight, so one outlier barely moves
//! the baseline, while a lasting new level is learned after a few hundred samples (and a
//! permanent shift stops alerting). A step of ≥ 8σ̂ (and ≥ `min_delta`) fires at its
//! `consecutive`-th sample; the tests allow N = 5 with `consecutive` = 3.

use serde::Serialize;

/// σ of a Gaussian whose mean absolute deviation is 1: √(π/2).
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
/// Outliers (outside the band) update the baseline with this share of `alpha`.
const OUTLIER_WEIGHT: f64 = 0.1;
/// A sample counts toward resolution when its departure is within this share of the band.
const RESOLVE_SHARE: f64 = 0.5;

/// Which way of leaving the band is an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Alert when the signal rises (latency, TTFT, error rate, spend rate).
    High,
    /// Alert when it falls (cache hit rate).
    Low,
}

/// One detector's settings (the gateway's `[alerts.<signal>]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetectorConfig {
    /// EWMA weight of a new sample for the level and the deviation, in (0, 1].
    pub alpha: f64,
    /// The threshold, in band widths (σ̂).
    pub k: f64,
    /// Samples learned before any alert.
    pub warmup: u32,
    /// The smallest absolute departure that may alert (a flat series with tiny noise has a tiny
    /// band; this keeps a tiny move from alerting).
    pub min_delta: f64,
    /// Departing samples in a row to fire; samples in a row back inside to resolve.
    pub consecutive: u32,
    pub direction: Direction,
}

impl DetectorConfig {
    /// The defaults: alpha 0.05, k 4, warm-up 30, min_delta 0, consecutive 3.
    pub const fn new(direction: Direction) -> DetectorConfig {
        DetectorConfig {
            alpha: 0.05,
            k: 4.0,
            warmup: 30,
            min_delta: 0.0,
            consecutive: 3,
            direction,
        }
    }

    /// Problems with the values, as (field, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            out.push(("alpha", "must be in (0, 1]".to_owned()));
        }
        if !(self.k.is_finite() && self.k > 0.0 && self.k <= 100.0) {
            out.push(("k", "must be a number above 0 and at most 100".to_owned()));
        }
        if self.warmup < 2 || self.warmup > 100_000 {
            out.push(("warmup", "must be between 2 and 100000".to_owned()));
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            out.push(("min_delta", "must be a finite number ≥ 0".to_owned()));
        }
        if self.consecutive == 0 || self.consecutive > 1000 {
            out.push(("consecutive", "must be between 1 and 1000".to_owned()));
        }
        out
    }
}

/// What a detector saw last: the sample, the baseline and the threshold it was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reading {
    pub value: f64,
    pub baseline: f64,
    /// The value beyond which a sample departs (baseline ± band).
    pub threshold: f64,
}

/// A change of the detector's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    Fired(Reading),
    Resolved(Reading),
}

/// One signal's detector.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    samples: u64,
    level: f64,
    deviation: f64,
    firing: bool,
    streak: u32,
    last: Option<Reading>,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Detector {
        Detector {
            config,
            samples: 0,
            level: 0.0,
            deviation: 0.0,
            firing: false,
            streak: 0,
            last: None,
        }
    }

    pub fn firing(&self) -> bool {
        self.firing
    }

    /// Samples seen (non-finite ones are ignored and not counted).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The last sample compared with the band (`None` during the warm-up).
    pub fn last(&self) -> Option<Reading> {
        self.last
    }

    /// The band's half-width now: max(k·σ̂, min_delta).
    fn band(&self) -> f64 {
        (self.config.k * MAD_TO_SIGMA * self.deviation).max(self.config.min_delta)
    }

    /// Feed one sample; returns the transition it caused, if any.
    pub fn observe(&mut self, x: f64) -> Option<Transition> {
        if !x.is_finite() {
            return None;
        }
        self.samples += 1;
        if self.samples == 1 {
            self.level = x;
            return None;
        }
        let residual = x - self.level;
        if self.samples <= u64::from(self.config.warmup) {
            // A running mean first, then the EWMA: the warm-up's samples weigh alike.
            let w = self.config.alpha.max(1.0 / self.samples as f64);
            self.deviation += w * (residual.abs() - self.deviation);
            self.level += w * residual;
            return None;
        }
        let band = self.band();
        let departure = match self.config.direction {
            Direction::High => residual,
            Direction::Low => -residual,
        };
        let threshold = match self.config.direction {
            Direction::High => self.level + band,
            Direction::Low => self.level - band,
        };
        let reading = Reading {
            value: x,
            baseline: self.level,
            threshold,
        };
        self.last = Some(reading);
        let transition = self.step(departure, band, reading);
        self.learn(residual, band);
        transition
    }

    /// The fire/resolve state machine for one sample's departure.
    fn step(&mut self, departure: f64, band: f64, reading: Reading) -> Option<Transition> {
        let counts = if self.firing {
            departure <= RESOLVE_SHARE * band
        } else {
            departure > band
        };
        self.streak = if counts { self.streak + 1 } else { 0 };
        if self.streak < self.config.consecutive {
            return None;
        }
        self.streak = 0;
        self.firing = !self.firing;
        Some(if self.firing {
            Transition::Fired(reading)
        } else {
            Transition::Resolved(reading)
        })
    }

    /// Update the level and deviation: fully inside the band, clipped and slowly outside it.
    fn learn(&mut self, residual: f64, band: f64) {
        let (w, r) = if residual.abs() <= band {
            (self.config.alpha, residual)
        } else {
            (
                self.config.alpha * OUTLIER_WEIGHT,
                residual.clamp(-band, band),
            )
        };
        self.deviation += w * (r.abs() - self.deviation);
        self.level += w * r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_types::rng::SplitMix64;

    const SEEDS: [u64; 5] = [1, 7, 42, 1234, 99_999];

    fn high() -> DetectorConfig {
        DetectorConfig::new(Direction::High)
    }

    /// Student's t with 3 degrees of freedom: heavy-tailed (infinite kurtosis).
    fn student_t3(rng: &mut SplitMix64) -> f64 {
        let z = rng.normal();
        let chi2: f64 = (0..3).map(|_| rng.normal().powi(2)).sum();
        z / (chi2 / 3.0).sqrt()
    }

    fn fires(d: &mut Detector, xs: impl IntoIterator<Item = f64>) -> Vec<usize> {
        xs.into_iter()
            .enumerate()
            .filter_map(|(i, x)| matches!(d.observe(x), Some(Transition::Fired(_))).then_some(i))
            .collect()
    }

    #[test]
    fn anomaly_stationary_gaussian_noise_never_alerts_over_10000_points() {
        for seed in SEEDS {
            let mut rng = SplitMix64::new(seed);
            let mut d = Detector::new(high());
            let fired = fires(&mut d, (0..10_000).map(|_| 100.0 + 10.0 * rng.normal()));
            assert!(fired.is_empty(), "seed {seed}: fired at {fired:?}");
        }
    }

    #[test]
    fn anomaly_stationary_heavy_tailed_noise_never_alerts_over_10000_points() {
        for seed in SEEDS {
            let mut rng = SplitMix64::new(seed);
            let mut d = Detector::new(high());
            let fired = fires(
                &mut d,
                (0..10_000).map(|_| 100.0 + 10.0 * student_t3(&mut rng)),
            );
            assert!(fired.is_empty(), "t3, seed {seed}: fired at {fired:?}");
            // Latency-like: log-normal, right-skewed (σ = 0.3: per-second means of skewed latencies).
            let mut d = Detector::new(high());
            let fired = fires(
                &mut d,
                (0..10_000).map(|_| 100.0 * (0.3 * rng.normal()).exp()),
            );
            assert!(
                fired.is_empty(),
                "log-normal, seed {seed}: fired at {fired:?}"
            );
            // A hit rate watched for drops, noisy around 0.6.
            let mut d = Detector::new(DetectorConfig::new(Direction::Low));
            let fired = fires(
                &mut d,
                (0..10_000).map(|_| 0.6 + 0.05 * student_t3(&mut rng)),
            );
            assert!(
                fired.is_empty(),
                "hit rate, seed {seed}: fired at {fired:?}"
            );
        }
    }

    /// N = 5: a step of 8σ fires within 5 samples (at the 3rd with `consecutive` = 3, unless noise
    /// pulls one of them back into the band), and resolves within 5 once the series returns.
    #[test]
    fn anomaly_a_step_change_fires_within_5_points_and_resolves_after_the_return() {
        const N: usize = 5;
        for seed in SEEDS {
            let mut rng = SplitMix64::new(seed);
            let mut d = Detector::new(high());
            let before = fires(&mut d, (0..1000).map(|_| 100.0 + 10.0 * rng.normal()));
            assert!(before.is_empty(), "seed {seed}");
            let mut fired_at = None;
            for i in 0..N {
                if let Some(Transition::Fired(r)) = d.observe(180.0 + 10.0 * rng.normal()) {
                    assert!(r.value > r.threshold && r.threshold > r.baseline, "{r:?}");
                    assert!((r.baseline - 100.0).abs() < 5.0, "{r:?}");
                    fired_at = Some(i + 1);
                    break;
                }
            }
            assert!(
                fired_at.is_some(),
                "seed {seed}: no alert within {N} points"
            );
            assert!(fired_at >= Some(3), "fired before 3 consecutive points");
            assert!(d.firing());
            let mut resolved = false;
            for _ in 0..N {
                if let Some(Transition::Resolved(_)) = d.observe(100.0 + 10.0 * rng.normal()) {
                    resolved = true;
                    break;
                }
            }
            assert!(resolved, "seed {seed}: not resolved within {N} points");
            assert!(!d.firing());
        }
    }

    #[test]
    fn anomaly_a_falling_hit_rate_fires_and_a_rising_one_does_not() {
        let mut rng = SplitMix64::new(3);
        let mut d = Detector::new(DetectorConfig {
            min_delta: 0.1,
            ..DetectorConfig::new(Direction::Low)
        });
        assert!(fires(&mut d, (0..200).map(|_| 0.5 + 0.02 * rng.normal())).is_empty());
        // Up is good news for a hit rate.
        assert!(fires(&mut d, (0..20).map(|_| 0.9 + 0.02 * rng.normal())).is_empty());
        assert!(fires(&mut d, (0..200).map(|_| 0.5 + 0.02 * rng.normal())).is_empty());
        let down = fires(&mut d, (0..5).map(|_| 0.1 + 0.02 * rng.normal()));
        assert_eq!(down, vec![2]);
    }

    #[test]
    fn anomaly_warm_up_holds_alerts_back() {
        let mut d = Detector::new(DetectorConfig {
            warmup: 50,
            consecutive: 1,
            ..high()
        });
        // Wild swings during the warm-up: learned, never alerted.
        let wild = (0..50).map(|i| if i % 2 == 0 { 1.0 } else { 1000.0 });
        assert!(fires(&mut d, wild).is_empty());
        assert!(d.last().is_none());
        assert_eq!(d.samples(), 50);
        // The 51st sample is the first one compared.
        let mut d = Detector::new(DetectorConfig {
            warmup: 50,
            consecutive: 1,
            ..high()
        });
        assert!(fires(&mut d, (0..50).map(|i| 10.0 + f64::from(i % 2))).is_empty());
        assert!(matches!(d.observe(100.0), Some(Transition::Fired(_))));
    }

    #[test]
    fn anomaly_min_delta_keeps_a_flat_series_from_alerting_on_a_tiny_move() {
        let cfg = DetectorConfig {
            min_delta: 5.0,
            ..high()
        };
        let mut rng = SplitMix64::new(11);
        let mut d = Detector::new(cfg);
        let flat = (0..500).map(|_| 100.0 + 0.001 * rng.normal());
        assert!(fires(&mut d, flat).is_empty());
        // +1 is a thousand σ, but under min_delta.
        assert!(fires(&mut d, (0..50).map(|_| 101.0)).is_empty());
        // Without min_delta the same move alerts.
        let mut d = Detector::new(high());
        let mut rng = SplitMix64::new(11);
        assert!(fires(&mut d, (0..500).map(|_| 100.0 + 0.001 * rng.normal())).is_empty());
        assert_eq!(fires(&mut d, (0..5).map(|_| 101.0)), vec![2]);
        // A move past min_delta alerts with it.
        let mut d = Detector::new(cfg);
        assert!(fires(&mut d, (0..500).map(|_| 100.0)).is_empty());
        assert_eq!(fires(&mut d, (0..5).map(|_| 110.0)), vec![2]);
    }

    #[test]
    fn anomaly_one_outlier_neither_fires_nor_moves_the_baseline_much() {
        let mut rng = SplitMix64::new(5);
        let mut d = Detector::new(high());
        assert!(fires(&mut d, (0..300).map(|_| 50.0 + rng.normal())).is_empty());
        let before = d.last().map(|r| r.baseline).unwrap_or_default();
        assert_eq!(d.observe(10_000.0), None);
        d.observe(50.0);
        let after = d.last().map(|r| r.baseline).unwrap_or_default();
        assert!((after - before).abs() < 1.0, "{before} → {after}");
        // Non-finite samples are ignored.
        assert_eq!(d.observe(f64::NAN), None);
        assert_eq!(d.observe(f64::INFINITY), None);
        assert_eq!(d.samples(), 302);
    }

    #[test]
    fn anomaly_a_lasting_new_level_is_learned_and_stops_alerting() {
        let mut d = Detector::new(high());
        let mut rng = SplitMix64::new(8);
        assert!(fires(&mut d, (0..200).map(|_| 10.0 + rng.normal())).is_empty());
        assert_eq!(fires(&mut d, (0..3).map(|_| 30.0 + rng.normal())).len(), 1);
        let mut resolved = false;
        for _ in 0..2000 {
            if let Some(Transition::Resolved(_)) = d.observe(30.0 + rng.normal()) {
                resolved = true;
                break;
            }
        }
        assert!(resolved, "a permanent shift kept alerting");
    }

    #[test]
    fn anomaly_config_validation_names_fields() {
        assert!(high().validate().is_empty());
        let bad = DetectorConfig {
            alpha: 0.0,
            k: f64::NAN,
            warmup: 1,
            min_delta: -1.0,
            consecutive: 0,
            direction: Direction::High,
        };
        let fields: Vec<_> = bad.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["alpha", "k", "warmup", "min_delta", "consecutive"]);
    }
}
